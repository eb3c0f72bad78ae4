package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/pki"
)

const certsUsageHead = `Usage: fluidity certs [flags]

Creates, in --dir, whatever is missing of:
  ca.crt, ca.key             the private certificate authority
  server.crt, server.key     the server's certificate (for --server-name and --san)
  <client>.crt, <client>.key one client certificate per --client

Existing files are kept, and missing ones are issued by the existing CA, so
running it again is safe. --force regenerates everything, which means every
agent and server must receive the new files.

Flags:
`

// certsOptions is the parsed command line of `fluidity certs`.
type certsOptions struct {
	dir        string
	serverName string
	sans       []string
	clients    []string
	force      bool
}

// expiryWarning is how close to expiry a kept CA must be before we say so.
const expiryWarning = 30 * 24 * time.Hour

func runCerts(args []string, stdout, stderr io.Writer) int {
	var o certsOptions
	fs := commandFlags("fluidity certs")
	fs.StringVar(&o.dir, "dir", "./certs", "directory to write the certificates and keys to")
	fs.StringVar(&o.serverName, "server-name", pki.DefaultServerName,
		"name the agent verifies the server certificate against (the agent dials the server's IP but checks this name)")
	fs.StringSliceVar(&o.sans, "san", nil, "extra DNS name or IP address for the server certificate (repeatable)")
	fs.StringSliceVar(&o.clients, "client", []string{"agent"}, "client certificate to create, by name (repeatable)")
	fs.BoolVar(&o.force, "force", false, "regenerate everything, replacing existing files")
	if code, done := parseCommand(fs, args, certsUsageHead, stdout, stderr); done {
		return code
	}
	plan, err := newCertPlan(o)
	if err != nil {
		return usageError(stderr, "fluidity certs", err)
	}
	if err := plan.execute(stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "fluidity certs: %v\n", err)
		return exitError
	}
	return exitOK
}

// certPlan is a validated certs request.
type certPlan struct {
	certsOptions
	dnsNames []string
	ips      []net.IP
}

func newCertPlan(o certsOptions) (*certPlan, error) {
	p := &certPlan{certsOptions: o}
	if o.dir == "" {
		return nil, errors.New("--dir must not be empty")
	}
	if err := pki.CheckDNSName(o.serverName); err != nil {
		return nil, fmt.Errorf("--server-name: %w", err)
	}
	for _, san := range o.sans {
		if ip := net.ParseIP(san); ip != nil {
			p.ips = append(p.ips, ip)
			continue
		}
		if err := pki.CheckDNSName(san); err != nil {
			return nil, fmt.Errorf("--san: %w (want a DNS name or an IP address)", err)
		}
		p.dnsNames = append(p.dnsNames, san)
	}
	if len(o.clients) == 0 {
		return nil, errors.New("at least one --client is needed")
	}
	seen := map[string]bool{}
	for _, c := range o.clients {
		if err := checkClientName(c); err != nil {
			return nil, err
		}
		if seen[strings.ToLower(c)] {
			// Case-insensitive file systems would make these one file.
			return nil, fmt.Errorf("--client %q given twice", c)
		}
		seen[strings.ToLower(c)] = true
	}
	return p, nil
}

var clientNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// checkClientName admits names that are safe as a file name on every
// platform the agent runs on and cannot collide with the CA or server files.
func checkClientName(name string) error {
	if !clientNamePattern.MatchString(name) || strings.HasSuffix(name, ".") || strings.Contains(name, "..") {
		return fmt.Errorf("--client %q: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	base := strings.ToLower(name)
	if i := strings.IndexByte(base, '.'); i >= 0 {
		base = base[:i]
	}
	reserved := []string{"ca", "server", "con", "prn", "aux", "nul",
		"com1", "com2", "com3", "com4", "com5", "com6", "com7", "com8", "com9",
		"lpt1", "lpt2", "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9"}
	if slices.Contains(reserved, base) {
		return fmt.Errorf("--client %q: name is reserved", name)
	}
	return nil
}

// pairState says which halves of a certificate/key pair are on disk.
type pairState int

const (
	pairMissing pairState = iota
	pairComplete
	pairPartial
)

func statPair(crt, key string) (pairState, error) {
	have := 0
	for _, p := range []string{crt, key} {
		_, err := os.Stat(p)
		switch {
		case err == nil:
			have++
		case errors.Is(err, fs.ErrNotExist):
		default:
			return 0, err
		}
	}
	switch have {
	case 0:
		return pairMissing, nil
	case 2:
		return pairComplete, nil
	}
	return pairPartial, nil
}

func (p *certPlan) path(name string) string { return filepath.Join(p.dir, name) }

func (p *certPlan) execute(stdout, stderr io.Writer) error {
	// The directory holds private keys: keep it private when we create it.
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", p.dir, err)
	}
	ca, err := p.ensureCA(stdout, stderr)
	if err != nil {
		return err
	}
	err = p.ensureLeaf(stdout, ca, "server", x509.ExtKeyUsageServerAuth, func() (*pki.KeyPair, error) {
		return ca.IssueServer(pki.ServerOptions{ServerName: p.serverName, DNSNames: p.dnsNames, IPAddresses: p.ips})
	}, p.checkServerNames)
	if err != nil {
		return err
	}
	for _, c := range p.clients {
		err := p.ensureLeaf(stdout, ca, c, x509.ExtKeyUsageClientAuth, func() (*pki.KeyPair, error) {
			return ca.IssueClient(pki.ClientOptions{Name: c})
		}, nil)
		if err != nil {
			return err
		}
	}
	if p.force {
		p.warnOrphans(stderr)
	}
	fmt.Fprintf(stdout, "\nServer needs: %s, %s, %s\n", p.path("ca.crt"), p.path("server.crt"), p.path("server.key"))
	for _, c := range p.clients {
		fmt.Fprintf(stdout, "Agent %q needs: %s, %s, %s\n", c, p.path("ca.crt"), p.path(c+".crt"), p.path(c+".key"))
	}
	fmt.Fprintf(stdout, "Keep %s private: whoever has it can mint certificates.\n", p.path("ca.key"))
	return nil
}

func (p *certPlan) ensureCA(stdout, stderr io.Writer) (*pki.CA, error) {
	crt, key := p.path("ca.crt"), p.path("ca.key")
	state, err := statPair(crt, key)
	if err != nil {
		return nil, err
	}
	if !p.force {
		switch state {
		case pairPartial:
			return nil, fmt.Errorf("only one of %s and %s exists; restore the other, or rerun with --force to start over (every agent and server then needs new files)", crt, key)
		case pairComplete:
			ca, err := pki.LoadCA(crt, key)
			if err != nil {
				return nil, err
			}
			left := time.Until(ca.Cert.NotAfter)
			if left <= 0 {
				return nil, fmt.Errorf("%s expired on %s; rerun with --force to start over", crt, ca.Cert.NotAfter.Format(time.DateOnly))
			}
			if left < expiryWarning {
				fmt.Fprintf(stderr, "warning: %s expires on %s; rerun with --force soon\n", crt, ca.Cert.NotAfter.Format(time.DateOnly))
			}
			reportPair(stdout, "kept", crt, key)
			return ca, nil
		}
	}
	ca, err := pki.NewCA(pki.CAOptions{})
	if err != nil {
		return nil, err
	}
	if err := ca.WriteFiles(crt, key, p.force); err != nil {
		return nil, err
	}
	reportPair(stdout, "wrote", crt, key)
	return ca, nil
}

// ensureLeaf keeps an existing, still valid certificate pair or issues a
// missing one. check, if set, adds requirements on a kept certificate.
func (p *certPlan) ensureLeaf(stdout io.Writer, ca *pki.CA, name string, usage x509.ExtKeyUsage,
	issue func() (*pki.KeyPair, error), check func(*x509.Certificate) error) error {
	crt, key := p.path(name+".crt"), p.path(name+".key")
	reissue := fmt.Sprintf("delete %s and %s to reissue it, or rerun with --force to regenerate everything", crt, key)
	state, err := statPair(crt, key)
	if err != nil {
		return err
	}
	if !p.force {
		switch state {
		case pairPartial:
			return fmt.Errorf("only one of %s and %s exists; %s", crt, key, reissue)
		case pairComplete:
			kp, err := pki.LoadKeyPair(crt, key)
			if err != nil {
				return fmt.Errorf("%w; %s", err, reissue)
			}
			_, err = kp.Cert.Verify(x509.VerifyOptions{Roots: ca.CertPool(), KeyUsages: []x509.ExtKeyUsage{usage}})
			if err != nil {
				return fmt.Errorf("%s is not valid with %s: %w; %s", crt, p.path("ca.crt"), err, reissue)
			}
			if check != nil {
				if err := check(kp.Cert); err != nil {
					return fmt.Errorf("%s %w; %s", crt, err, reissue)
				}
			}
			reportPair(stdout, "kept", crt, key)
			return nil
		}
	}
	kp, err := issue()
	if err != nil {
		return err
	}
	if err := kp.WriteFiles(crt, key, p.force); err != nil {
		return err
	}
	reportPair(stdout, "wrote", crt, key)
	return nil
}

// checkServerNames makes sure a kept server certificate covers every name
// asked for, so a new --san is never silently ignored.
func (p *certPlan) checkServerNames(cert *x509.Certificate) error {
	var missing []string
	names := append([]string{p.serverName}, p.dnsNames...)
	for _, ip := range p.ips {
		names = append(names, ip.String())
	}
	for _, n := range names {
		if cert.VerifyHostname(n) != nil {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("does not cover %s", strings.Join(missing, ", "))
	}
	return nil
}

// warnOrphans points out certificates left in the directory that a new CA
// no longer vouches for, so nobody is surprised when that agent is refused.
func (p *certPlan) warnOrphans(stderr io.Writer) {
	matches, err := filepath.Glob(filepath.Join(p.dir, "*.crt"))
	if err != nil {
		return
	}
	for _, m := range matches {
		name := strings.TrimSuffix(filepath.Base(m), ".crt")
		if name == "ca" || name == "server" || slices.Contains(p.clients, name) {
			continue
		}
		fmt.Fprintf(stderr, "warning: %s was issued by the previous CA and will be refused; rerun with --client %s (and any other clients) to reissue it\n", m, name)
	}
}

func reportPair(w io.Writer, verb, crt, key string) {
	fmt.Fprintf(w, "%-6s %s\n%-6s %s\n", verb, crt, verb, key)
}
