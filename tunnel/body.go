package tunnel

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http/httputil"
	"strconv"

	"github.com/fluidity-tunnel/fluidity/internal/relay"
)

// errShortBody reports a body that ended before its declared length.
var errShortBody = errors.New("tunnel: body shorter than its content length")

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
	br := bufio.NewReaderSize(src, 4096)
	return &chunkedReader{br: br, cr: httputil.NewChunkedReader(br)}
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

type chunkedReader struct {
	br   *bufio.Reader
	cr   io.Reader
	done bool
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	if c.done {
		return 0, io.EOF
	}
	n, err := c.cr.Read(p)
	if err == io.EOF {
		// The last-chunk line has been read; the empty trailer section remains.
		if terr := c.readEmptyTrailer(); terr != nil {
			return n, terr
		}
		c.done = true
	}
	return n, err
}

func (c *chunkedReader) readEmptyTrailer() error {
	var crlf [2]byte
	if _, err := io.ReadFull(c.br, crlf[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	if crlf != [2]byte{'\r', '\n'} {
		return fmt.Errorf("%w: chunked body trailer not supported", ErrMalformedHeader)
	}
	return nil
}
