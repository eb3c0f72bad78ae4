package tunnel

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/fluidity-tunnel/fluidity/internal/relay"
)

var (
	// errShortBody reports a body that ended before its declared length.
	errShortBody = errors.New("tunnel: body shorter than its content length")
	// errMalformedChunk reports chunked coding that does not follow PROTOCOL.md.
	errMalformedChunk = errors.New("tunnel: malformed chunked body")
)

// writeBody sends a body framed as PROTOCOL.md describes: n raw bytes when n >= 0,
// chunked coding otherwise.
func writeBody(dst io.Writer, src io.Reader, n int64) (int64, error) {
	if n >= 0 {
		written, err := relay.Copy(dst, io.LimitReader(src, n))
		if err == nil && written < n {
			err = errShortBody
		}
		return written, err
	}
	return writeChunked(dst, src)
}

// writeChunked emits each read as one chunk in one Write, so a chunk costs one yamux
// frame rather than three (header, data, CRLF).
func writeChunked(dst io.Writer, src io.Reader) (int64, error) {
	const headRoom = 10 // up to 8 hex digits + CRLF
	b := relay.GetBuffer()
	defer relay.PutBuffer(b)
	buf := *b
	var total int64
	for {
		nr, rerr := src.Read(buf[headRoom : len(buf)-2])
		if nr > 0 {
			head := strconv.AppendInt(buf[:0:headRoom], int64(nr), 16)
			head = append(head, '\r', '\n')
			start := headRoom - len(head)
			copy(buf[start:], head)
			end := headRoom + nr
			buf[end], buf[end+1] = '\r', '\n'
			if _, err := dst.Write(buf[start : end+2]); err != nil {
				return total, err
			}
			total += int64(nr)
		}
		if rerr == io.EOF {
			_, err := io.WriteString(dst, "0\r\n\r\n")
			return total, err
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

// bodyReader returns the reader for a body framed as PROTOCOL.md describes. A body
// cut short is reported as io.ErrUnexpectedEOF, never as a clean end.
func bodyReader(src io.Reader, n int64) io.Reader {
	if n >= 0 {
		return &exactReader{r: src, n: n}
	}
	return &chunkedReader{br: bufio.NewReaderSize(src, 4096)}
}

type exactReader struct {
	r io.Reader
	n int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.n {
		p = p[:e.n]
	}
	n, err := e.r.Read(p)
	e.n -= int64(n)
	if err == io.EOF {
		if e.n > 0 {
			return n, io.ErrUnexpectedEOF
		}
		err = nil
	}
	if e.n == 0 && err == nil {
		err = io.EOF
	}
	return n, err
}

// maxChunkSizeDigits bounds a chunk-size line; writeChunked uses at most 8 digits.
const maxChunkSizeDigits = 16

// chunkedReader decodes the chunked coding writeChunked produces, strictly: chunk
// sizes are bare hex digits ended by CRLF (no extensions, no whitespace, no bare LF),
// each chunk's data is followed by CRLF, and the last chunk by an empty trailer
// section. Anything else, or an end of input before the last chunk, is an error
// that sticks.
type chunkedReader struct {
	br      *bufio.Reader
	left    int64 // data bytes left in the current chunk
	inChunk bool  // a chunk's data has started; its CRLF is still due
	err     error
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if c.left == 0 {
		if c.inChunk {
			if err := c.readCRLF(); err != nil {
				return 0, c.fail(err)
			}
			c.inChunk = false
		}
		size, err := c.readSize()
		if err != nil {
			return 0, c.fail(err)
		}
		if size == 0 {
			if err := c.readCRLF(); err != nil {
				return 0, c.fail(err)
			}
			c.err = io.EOF
			return 0, io.EOF
		}
		c.left, c.inChunk = size, true
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.br.Read(p)
	c.left -= int64(n)
	if err != nil {
		return n, c.fail(err)
	}
	return n, nil
}

func (c *chunkedReader) fail(err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	c.err = err
	return err
}

func (c *chunkedReader) readSize() (int64, error) {
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return 0, fmt.Errorf("%w: chunk size line too long", errMalformedChunk)
		}
		return 0, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return 0, fmt.Errorf("%w: bad chunk size line", errMalformedChunk)
	}
	digits := line[:len(line)-2]
	if len(digits) > maxChunkSizeDigits {
		return 0, fmt.Errorf("%w: chunk size too large", errMalformedChunk)
	}
	var size uint64
	for _, d := range digits {
		var v byte
		switch {
		case d >= '0' && d <= '9':
			v = d - '0'
		case d >= 'a' && d <= 'f':
			v = d - 'a' + 10
		case d >= 'A' && d <= 'F':
			v = d - 'A' + 10
		default:
			return 0, fmt.Errorf("%w: bad chunk size line", errMalformedChunk)
		}
		size = size<<4 | uint64(v)
	}
	if size > 1<<62 {
		return 0, fmt.Errorf("%w: chunk size too large", errMalformedChunk)
	}
	return int64(size), nil
}

func (c *chunkedReader) readCRLF() error {
	var crlf [2]byte
	if _, err := io.ReadFull(c.br, crlf[:]); err != nil {
		return err
	}
	if crlf != [2]byte{'\r', '\n'} {
		return fmt.Errorf("%w: missing CRLF (trailers are not supported)", errMalformedChunk)
	}
	return nil
}
