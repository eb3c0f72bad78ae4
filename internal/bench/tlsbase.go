package bench

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/pki"
)

// TLSStream measures one in-process Go TLS 1.3 stream over loopback moving
// n bytes server → client: the ceiling a single-connection tunnel can reach.
func TLSStream(ctx context.Context, n int64) (float64, error) {
	ca, err := pki.NewCA(pki.CAOptions{})
	if err != nil {
		return 0, err
	}
	kp, err := ca.IssueServer(pki.ServerOptions{})
	if err != nil {
		return 0, err
	}
	cert, err := kp.TLSCertificate()
	if err != nil {
		return 0, err
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}})
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		var hdr [8]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		for left := int64(binary.BigEndian.Uint64(hdr[:])); left > 0; {
			chunk := bulkChunk[:min(int64(len(bulkChunk)), left)]
			if _, err := c.Write(chunk); err != nil {
				return
			}
			left -= int64(len(chunk))
		}
	}()
	d := tls.Dialer{Config: &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: ca.CertPool(), ServerName: pki.DefaultServerName}}
	c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		return 0, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	start := time.Now()
	if _, err := c.Write(binary.BigEndian.AppendUint64(nil, uint64(n))); err != nil {
		return 0, err
	}
	got, err := drain(io.LimitReader(c, n))
	if err != nil {
		return 0, err
	}
	return MBps(got, time.Since(start)), nil
}
