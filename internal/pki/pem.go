package pki

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

const (
	pemCertificate  = "CERTIFICATE"
	pemPrivateKey   = "PRIVATE KEY"    // PKCS #8
	pemECPrivateKey = "EC PRIVATE KEY" // SEC 1, as written by `openssl ecparam`
)

// EncodeCertPEM returns cert as a PEM "CERTIFICATE" block.
func EncodeCertPEM(cert *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: cert.Raw})
}

// EncodeKeyPEM returns key as a PKCS #8 PEM "PRIVATE KEY" block.
func EncodeKeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der}), nil
}

// DecodeCertPEM parses the first CERTIFICATE block in data.
func DecodeCertPEM(data []byte) (*x509.Certificate, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("pki: no CERTIFICATE pem block found")
		}
		if block.Type != pemCertificate {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("pki: parse certificate: %w", err)
		}
		return cert, nil
	}
}

// DecodeKeyPEM parses the first private key block in data, accepting
// PKCS #8 ("PRIVATE KEY") and SEC 1 ("EC PRIVATE KEY") encodings.
func DecodeKeyPEM(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("pki: no PRIVATE KEY pem block found")
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case pemPrivateKey:
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case pemECPrivateKey:
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("pki: parse private key: %w", err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("pki: unsupported private key type %T", key)
		}
		return signer, nil
	}
}

// CertPEM returns the pair's certificate as PEM.
func (kp *KeyPair) CertPEM() []byte { return EncodeCertPEM(kp.Cert) }

// KeyPEM returns the pair's private key as PKCS #8 PEM.
func (kp *KeyPair) KeyPEM() ([]byte, error) { return EncodeKeyPEM(kp.Key) }

// LoadKeyPair reads a PEM certificate and its PEM private key and checks
// that they belong together.
func LoadKeyPair(certFile, keyFile string) (*KeyPair, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("pki: read certificate: %w", err)
	}
	cert, err := DecodeCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, certFile)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("pki: read private key: %w", err)
	}
	key, err := DecodeKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, keyFile)
	}
	if err := checkKeyMatches(cert, key); err != nil {
		return nil, fmt.Errorf("%w (%s and %s)", err, certFile, keyFile)
	}
	return &KeyPair{Cert: cert, Key: key}, nil
}

// LoadCA reads a CA certificate and key written by CA.WriteFiles (or any
// PEM CA whose key is PKCS #8 or SEC 1).
func LoadCA(certFile, keyFile string) (*CA, error) {
	kp, err := LoadKeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	ca, err := NewCAFromKeyPair(kp)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, certFile)
	}
	return ca, nil
}
