package tunnel

import (
	"errors"
	"fmt"
	"io"

	"github.com/fluidity-tunnel/fluidity/tunnel/internal/wire"
)

// errShortBody reports a body that ended before its declared length.
var errShortBody = errors.New("tunnel: body shorter than its content length")

// errLongBody reports a body that went on past its declared length.
var errLongBody = fmt.Errorf("%w: body longer than its content length", wire.ErrMalformed)

// bodyReader reads one body from a stream (PROTOCOL.md): exactly n bytes when
// n >= 0, else everything up to the peer's FIN. A body cut short, by an early FIN
// or a reset, is an error wrapping io.ErrUnexpectedEOF, never a clean end.
// With wantFIN, a body of known length must also be followed by the peer's FIN
// (a response), which is read before EOF is reported so that the stream ends
// cleanly.
type bodyReader struct {
	s       *stream
	n       int64 // bytes left; -1: until FIN
	wantFIN bool
	err     error
}

func newBodyReader(s *stream, n int64, wantFIN bool) *bodyReader {
	return &bodyReader{s: s, n: n, wantFIN: wantFIN}
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.n == 0 {
		b.err = b.end()
		return 0, b.err
	}
	if b.n > 0 && int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.s.Read(p)
	if b.n > 0 {
		b.n -= int64(n)
	}
	switch {
	case errors.Is(err, io.EOF) && b.n > 0:
		err = fmt.Errorf("%w: %w", errShortBody, io.ErrUnexpectedEOF)
	case errors.Is(err, io.EOF):
		err = io.EOF
	case err != nil:
		err = fmt.Errorf("tunnel: body cut short: %w: %w", err, io.ErrUnexpectedEOF)
	case b.n == 0:
		err = b.end()
	}
	if err != nil {
		b.err = err
	}
	return n, err
}

// end is what follows the last byte of a known-length body: EOF, once the FIN
// has been read if one is wanted.
func (b *bodyReader) end() error {
	if !b.wantFIN {
		return io.EOF
	}
	var one [1]byte
	n, err := b.s.Read(one[:])
	switch {
	case n > 0:
		return errLongBody
	case errors.Is(err, io.EOF):
		return io.EOF
	default:
		return fmt.Errorf("tunnel: body end: %w: %w", err, io.ErrUnexpectedEOF)
	}
}
