package tunnel

import (
	"encoding/binary"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// jsonOptions configure the header codec, github.com/go-json-experiment/json: a
// mirror of encoding/json/v2 (stable in Go 1.27), which decodes a request header
// about three times as fast as encoding/json. Invalid UTF-8 (a header value may
// carry any byte) becomes U+FFFD and headers are written byte for byte as
// encoding/json wrote them (sorted keys, nil lists as null). Unlike encoding/json,
// a header with a duplicated member name is malformed, so that two peers cannot
// read one header two ways.
var jsonOptions = json.JoinOptions(
	jsontext.AllowInvalidUTF8(true),
	json.Deterministic(true),
	json.FormatNilSliceAsNull(true),
)

// The framing is documented in PROTOCOL.md; keep the two in step.

// ProtocolVersion is the version of the stream framing this package speaks.
const ProtocolVersion = 1

// DefaultMaxHeaderSize caps the JSON header of one frame.
const DefaultMaxHeaderSize = 64 << 10

const prefixSize = 9 // magic (4) + version (1) + length (4)

var magic = [4]byte{'F', 'L', 'D', 'Y'}

// Frame types.
const (
	TypeHTTP      = "http"
	TypeConnect   = "connect"
	TypeWebSocket = "websocket"
	TypeResponse  = "response"
	TypeConnected = "connected"
	TypeError     = "error"
	TypeControl   = "control"
	TypeAbort     = "abort"
)

var (
	// ErrBadMagic means the stream does not start with a Fluidity frame.
	ErrBadMagic = errors.New("tunnel: bad frame magic")
	// ErrHeaderTooLarge means a frame header exceeded the configured cap.
	ErrHeaderTooLarge = errors.New("tunnel: frame header too large")
	// ErrMalformedHeader means the frame header is not the JSON the protocol expects.
	ErrMalformedHeader = errors.New("tunnel: malformed frame header")
)

// VersionError reports a frame in a protocol version this package does not speak.
type VersionError struct{ Version byte }

func (e *VersionError) Error() string {
	return fmt.Sprintf("tunnel: unsupported protocol version %d", e.Version)
}

// Envelope is one frame's header: its type and the still-encoded payload.
type Envelope struct {
	Type    string             `json:"type"`
	Payload stdjson.RawMessage `json:"payload,omitempty"`
}

// Decode unmarshals the payload into v.
func (e *Envelope) Decode(v any) error {
	if len(e.Payload) == 0 {
		return fmt.Errorf("%w: %s frame without payload", ErrMalformedHeader, e.Type)
	}
	if err := json.Unmarshal(e.Payload, v, jsonOptions); err != nil {
		return fmt.Errorf("%w: %s payload: %v", ErrMalformedHeader, e.Type, err)
	}
	return nil
}

// outEnvelope is the encoding side: the payload is marshalled in the same pass.
type outEnvelope struct {
	Type    string `json:"type"`
	Payload any    `json:"payload"`
}

// AppendFrame appends the complete frame for (typ, payload) to dst. Building the
// frame in one buffer lets the caller hand it to the stream in a single Write, which
// becomes a single yamux data frame.
func AppendFrame(dst []byte, typ string, payload any) ([]byte, error) {
	start := len(dst)
	dst = append(dst, magic[:]...)
	dst = append(dst, ProtocolVersion, 0, 0, 0, 0)
	body, err := json.Marshal(outEnvelope{Type: typ, Payload: payload}, jsonOptions)
	if err != nil {
		return dst[:start], fmt.Errorf("tunnel: encode %s frame: %w", typ, err)
	}
	binary.BigEndian.PutUint32(dst[start+5:], uint32(len(body)))
	return append(dst, body...), nil
}

// WriteFrame writes one frame to w in a single Write call.
func WriteFrame(w io.Writer, typ string, payload any) error {
	buf, err := AppendFrame(make([]byte, 0, 512), typ, payload)
	if err != nil {
		return err
	}
	_, err = w.Write(buf)
	return err
}

// ReadFrame reads one frame from r. It never reads past the frame, never allocates
// more than maxHeader bytes for it, and reports truncation as io.ErrUnexpectedEOF
// (io.EOF only when r ends before the first byte).
func ReadFrame(r io.Reader, maxHeader int) (Envelope, error) {
	if maxHeader <= 0 {
		maxHeader = DefaultMaxHeaderSize
	}
	var prefix [prefixSize]byte
	if _, err := io.ReadFull(r, prefix[:]); err != nil {
		return Envelope{}, err
	}
	if [4]byte(prefix[:4]) != magic {
		return Envelope{}, ErrBadMagic
	}
	if v := prefix[4]; v != ProtocolVersion {
		return Envelope{}, &VersionError{Version: v}
	}
	n := binary.BigEndian.Uint32(prefix[5:])
	if uint64(n) > uint64(maxHeader) {
		return Envelope{}, fmt.Errorf("%w: %d bytes, limit %d", ErrHeaderTooLarge, n, maxHeader)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Envelope{}, err
	}
	var env Envelope
	if err := json.Unmarshal(body, &env, jsonOptions); err != nil {
		return Envelope{}, fmt.Errorf("%w: %v", ErrMalformedHeader, err)
	}
	if env.Type == "" {
		return Envelope{}, fmt.Errorf("%w: missing type", ErrMalformedHeader)
	}
	return env, nil
}
