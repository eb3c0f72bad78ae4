package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// bulkChunk is the shared, read-only buffer every bulk response is cut from.
var bulkChunk = make([]byte, 256<<10)

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// Target is the local HTTP server every path reaches.
//
//	GET  /small       a tiny response
//	GET  /bulk?n=N    N bytes of body
//	POST /sink        discards the body, answers with the byte count
type Target struct {
	Addr    string   // host:port on 127.0.0.1
	Origins *Origins // the same routes over HTTPS, on OriginCount ports
	srv     *http.Server
	ln      net.Listener
	sunk    atomic.Int64 // bytes received by /sink so far
	busy    atomic.Int64 // /bulk and /sink handlers running
	sent    atomic.Int64 // bytes /bulk has written so far
}

// Sunk returns the bytes /sink has received since the target started.
func (t *Target) Sunk() int64 { return t.sunk.Load() }

// Quiesce waits until no /bulk or /sink transfer is moving data, so that
// one measurement's leftovers (a tunnel still draining a closed stream) do
// not load the next: either none is running, or those left have moved
// nothing for 300 ms. It returns how many are still open, and an error if
// data is still moving after limit.
func (t *Target) Quiesce(ctx context.Context, limit time.Duration) (int64, error) {
	moved := func() int64 { return t.sent.Load() + t.sunk.Load() }
	deadline := time.Now().Add(limit)
	last, still := moved(), time.Now()
	for {
		open := t.busy.Load()
		if open == 0 {
			return 0, nil
		}
		if m := moved(); m != last {
			last, still = m, time.Now()
		} else if time.Since(still) >= 300*time.Millisecond {
			return open, nil
		}
		if time.Now().After(deadline) {
			return open, fmt.Errorf("%d transfers still moving data %v after their clients finished", open, limit)
		}
		select {
		case <-ctx.Done():
			return open, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// StartTarget listens on a free loopback port and serves until Close.
func StartTarget() (*Target, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	t := &Target{}
	mux := http.NewServeMux()
	mux.HandleFunc("/small", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "3")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/bulk", func(w http.ResponseWriter, r *http.Request) {
		t.busy.Add(1)
		defer t.busy.Add(-1)
		n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		if err != nil || n < 0 {
			http.Error(w, "bad n", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		w.Header().Set("Content-Type", "application/octet-stream")
		for n > 0 {
			chunk := bulkChunk
			if n < int64(len(chunk)) {
				chunk = chunk[:n]
			}
			m, err := w.Write(chunk)
			t.sent.Add(int64(m))
			if err != nil {
				return
			}
			n -= int64(len(chunk))
		}
	})
	mux.HandleFunc("/sink", func(w http.ResponseWriter, r *http.Request) {
		t.busy.Add(1)
		defer t.busy.Add(-1)
		buf := copyBufs.Get().(*[]byte)
		defer copyBufs.Put(buf)
		var n int64
		for {
			m, err := r.Body.Read(*buf)
			n += int64(m)
			t.sunk.Add(int64(m))
			if err == io.EOF {
				break
			}
			if err != nil {
				return
			}
		}
		body := strconv.FormatInt(n, 10)
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = io.WriteString(w, body)
	})
	t.Addr, t.ln, t.srv = ln.Addr().String(), ln, &http.Server{Handler: mux}
	if t.Origins, err = startOrigins(mux, OriginCount); err != nil {
		ln.Close()
		return nil, err
	}
	go func() {
		if err := t.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Println("target:", err)
		}
	}()
	return t, nil
}

// Close stops the server and drops open connections.
func (t *Target) Close() error {
	t.srv.Close()
	t.Origins.close()
	return nil
}
