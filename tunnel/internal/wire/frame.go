// Package wire is the Fluidity stream format: the one frame that starts each
// direction of a stream, its payloads, and the codes a stream reset carries. It is
// specified in tunnel/PROTOCOL.md; keep the two in step.
//
// The package is internal: the public API of the tunnel is its client and server.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Version is the protocol version this package writes and reads.
const Version = 2

// DefaultMaxHeaderSize caps the JSON header of one frame.
const DefaultMaxHeaderSize = 64 << 10

// PrefixSize is the fixed part of a frame: magic (4), version (1), length (4).
const PrefixSize = 9

var magic = [4]byte{'F', 'L', 'D', 'Y'}

// Frame types.
const (
	TypeHTTP      = "http"
	TypeConnect   = "connect"
	TypeWebSocket = "websocket"
	TypeResponse  = "response"
	TypeConnected = "connected"
	TypeError     = "error"
)

var (
	// ErrBadMagic means the stream does not start with a Fluidity frame.
	ErrBadMagic = errors.New("tunnel: bad frame magic")
	// ErrHeaderTooLarge means a frame header exceeded the configured cap.
	ErrHeaderTooLarge = errors.New("tunnel: frame header too large")
	// ErrMalformed means the frame header is not the JSON the protocol expects.
	ErrMalformed = errors.New("tunnel: malformed frame header")
)

// VersionError reports a frame in a protocol version this package does not speak.
type VersionError struct{ Version byte }

func (e *VersionError) Error() string {
	return fmt.Sprintf("tunnel: unsupported protocol version %d", e.Version)
}

// jsonOptions configure the header codec, github.com/go-json-experiment/json (the
// mirror of encoding/json/v2), which decodes a request header about three times as
// fast as encoding/json. Invalid UTF-8 (a header value may carry any byte) becomes
// U+FFFD; keys are written sorted and nil lists as null, byte for byte as version 1
// wrote them. A duplicated member name is malformed, so that two peers cannot read
// one header two ways.
var jsonOptions = json.JoinOptions(
	jsontext.AllowInvalidUTF8(true),
	json.Deterministic(true),
	json.FormatNilSliceAsNull(true),
)

// outFrame is what every frame encodes: its type and its payload, marshalled in one pass.
type outFrame struct {
	Type    string `json:"type"`
	Payload any    `json:"payload"`
}

// Append appends the complete frame for (typ, payload) to dst. One buffer lets the
// caller hand the frame to the stream in one Write, which becomes one yamux frame.
func Append(dst []byte, typ string, payload any) ([]byte, error) {
	return AppendVersion(dst, Version, typ, payload)
}

// AppendVersion is Append for another protocol version's framing: the server
// answers a peer speaking an older version in that version, so that it can read
// the refusal.
func AppendVersion(dst []byte, version byte, typ string, payload any) ([]byte, error) {
	start := len(dst)
	dst = append(dst, magic[:]...)
	dst = append(dst, version, 0, 0, 0, 0)
	out, ok := appendFast(dst, typ, payload)
	if !ok {
		var err error
		if out, err = appendGeneral(dst[:start+PrefixSize], typ, payload); err != nil {
			return dst[:start], err
		}
	}
	n := len(out) - start - PrefixSize
	if int64(n) > math.MaxUint32 {
		return dst[:start], fmt.Errorf("%w: %d bytes", ErrHeaderTooLarge, n)
	}
	binary.BigEndian.PutUint32(out[start+5:], uint32(n)) // #nosec G115 -- checked just above
	return out, nil
}

// appendGeneral appends the JSON header of (typ, payload) with the general codec.
func appendGeneral(dst []byte, typ string, payload any) ([]byte, error) {
	body, err := json.Marshal(outFrame{Type: typ, Payload: payload}, jsonOptions)
	if err != nil {
		return dst, fmt.Errorf("tunnel: encode %s frame: %w", typ, err)
	}
	return append(dst, body...), nil
}

// Write writes one frame to w in a single Write call.
func Write(w io.Writer, typ string, payload any) error {
	bp := frameBufs.Get().(*[]byte)
	buf, err := Append((*bp)[:0], typ, payload)
	if err == nil {
		_, err = w.Write(buf) // which may not keep buf (io.Writer), so it goes back
	}
	putFrameBuf(bp, buf)
	return err
}

// frameBufs are the buffers of frames being written and read: every stream
// writes one frame and reads one, and a buffer for each was two of the
// allocations of a plain-HTTP request on each side.
var frameBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxPooledFrame keeps a rare large header's buffer out of the pool.
const maxPooledFrame = 16 << 10

func putFrameBuf(bp *[]byte, buf []byte) {
	if cap(buf) <= maxPooledFrame {
		*bp = buf[:0]
		frameBufs.Put(bp)
	}
}

// ReadHeader reads one frame's prefix and JSON header from r and returns the header
// bytes. It never reads past the frame, never allocates more than maxHeader bytes
// for it, and reports truncation as io.ErrUnexpectedEOF (io.EOF only when r ends
// before the first byte).
func ReadHeader(r io.Reader, maxHeader int) ([]byte, error) {
	return readHeader(r, maxHeader, nil)
}

// readHeader is ReadHeader reading into dst when the header fits in it.
func readHeader(r io.Reader, maxHeader int, dst []byte) ([]byte, error) {
	if maxHeader <= 0 {
		maxHeader = DefaultMaxHeaderSize
	}
	var prefix [PrefixSize]byte
	if _, err := io.ReadFull(r, prefix[:]); err != nil {
		return nil, err
	}
	if [4]byte(prefix[:4]) != magic {
		return nil, ErrBadMagic
	}
	if v := prefix[4]; v != Version {
		return nil, &VersionError{Version: v}
	}
	n := binary.BigEndian.Uint32(prefix[5:])
	if uint64(n) > uint64(maxHeader) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrHeaderTooLarge, n, maxHeader)
	}
	if cap(dst) < int(n) {
		dst = make([]byte, n)
	}
	body := dst[:n]
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return body, nil
}

// Read reads one frame from r into v, a *Request or an *Answer: the header is
// decoded once, into the one struct its reader expects.
func Read(r io.Reader, maxHeader int, v frameValue) error {
	bp := frameBufs.Get().(*[]byte)
	body, err := readHeader(r, maxHeader, (*bp)[:cap(*bp)])
	if err != nil {
		frameBufs.Put(bp)
		return err
	}
	// Nothing decoded refers to body: both codecs copy what they keep
	// (TestReadKeepsNothingOfItsBuffer).
	err = Decode(body, v)
	putFrameBuf(bp, body)
	return err
}

// frameValue is *Request or *Answer.
type frameValue interface {
	reset()
	check() error
}

// Decode decodes a frame header read by ReadHeader into v, which it first
// clears: a reused value keeps nothing of an earlier frame.
func Decode(body []byte, v frameValue) error {
	v.reset()
	if decodeFast(body, v) {
		return v.check()
	}
	v.reset()
	return decodeGeneral(body, v)
}

// decodeGeneral is Decode with the general codec alone.
func decodeGeneral(body []byte, v frameValue) error {
	if err := json.Unmarshal(body, v, jsonOptions); err != nil {
		// The JSON error is text only: it wraps io.ErrUnexpectedEOF for an
		// unterminated header, which callers would take for a cut stream
		// (no answer) rather than a malformed frame (CodeBadRequest).
		return fmt.Errorf("%w: %v", ErrMalformed, err) //nolint:errorlint // deliberately not wrapped (see above)
	}
	return v.check()
}
