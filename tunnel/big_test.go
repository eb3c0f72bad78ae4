package tunnel

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The pattern is position dependent (every 8-byte word encodes its offset), so a
// lost, duplicated or reordered byte anywhere in a transfer is detected, at memory
// speed and without holding the data.

func patternWord(i int64) uint64 { return uint64(i)*0x9e3779b97f4a7c15 ^ 0x5bd1e9955bd1e995 }

func patternByte(off int64) byte { return byte(patternWord(off/8) >> (8 * (off % 8))) }

// fillPattern writes the pattern bytes for offsets off.. into p.
func fillPattern(p []byte, off int64) {
	for len(p) > 0 && off%8 != 0 {
		p[0] = patternByte(off)
		p, off = p[1:], off+1
	}
	for len(p) >= 8 {
		binary.LittleEndian.PutUint64(p, patternWord(off/8))
		p, off = p[8:], off+8
	}
	for i := range p {
		p[i] = patternByte(off + int64(i))
	}
}

// checkPattern returns the index of the first byte of p that is not the pattern at
// offset off, or -1.
func checkPattern(p []byte, off int64) int {
	i := 0
	for ; i < len(p) && (off+int64(i))%8 != 0; i++ {
		if p[i] != patternByte(off+int64(i)) {
			return i
		}
	}
	for ; i+8 <= len(p); i += 8 {
		if binary.LittleEndian.Uint64(p[i:]) != patternWord((off+int64(i))/8) {
			break
		}
	}
	for ; i < len(p); i++ {
		if p[i] != patternByte(off+int64(i)) {
			return i
		}
	}
	return -1
}

// patternReader produces n pattern bytes.
type patternReader struct{ off, n int64 }

func (r *patternReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.n-r.off)]
	fillPattern(p, r.off)
	r.off += int64(len(p))
	return len(p), nil
}

// patternChecker verifies that what is written to it is the pattern.
type patternChecker struct{ off int64 }

func (c *patternChecker) Write(p []byte) (int, error) {
	if i := checkPattern(p, c.off); i >= 0 {
		return i, fmt.Errorf("content differs at offset %d", c.off+int64(i))
	}
	c.off += int64(len(p))
	return len(p), nil
}

// bigTarget serves /download?n= (with a Content-Length) and /upload (any framing),
// verifying every byte.
func bigTarget(t testing.TB) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/download", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		buf := make([]byte, 32<<10)
		_, _ = io.CopyBuffer(w, &patternReader{n: n}, buf)
	})
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		c := &patternChecker{}
		buf := make([]byte, 32<<10)
		if _, err := io.CopyBuffer(c, r.Body, buf); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = fmt.Fprint(w, c.off)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// heapSampler tracks the peak of live-and-unswept heap object bytes.
type heapSampler struct {
	stop chan struct{}
	done chan struct{}
	peak atomic.Uint64
}

var heapMetric = []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}

func heapObjects() uint64 {
	s := make([]metrics.Sample, len(heapMetric))
	copy(s, heapMetric)
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func startHeapSampler() *heapSampler {
	h := &heapSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if v := heapObjects(); v > h.peak.Load() {
				h.peak.Store(v)
			}
			select {
			case <-tick.C:
			case <-h.stop:
				return
			}
		}
	}()
	return h
}

func (h *heapSampler) finish() uint64 {
	close(h.stop)
	<-h.done
	return h.peak.Load()
}

// TestBigTransfer streams bigTransferSize bytes down and up through the tunnel
// (client, session, server, target all in this process) and asserts that the heap
// never grows by more than bigHeapBound over its baseline.
//
// Why the bound holds: bodies are streamed, never buffered whole. What a transfer
// may hold at once is, per direction, one yamux receive window on the receiving
// stream (StreamWindow, 1 MiB here; yamux grows the receive buffer to at most about
// twice the bytes held), the relay and copy buffers (64 KiB pooled, 32 KiB here),
// the bufio and TLS record buffers of the tunnel connection and of the target
// connection (a few tens of KiB), plus garbage the collector has not reclaimed yet.
// That is about 4 MiB; 8 MiB leaves room for scheduling noise and is still far below
// what a leak or a buffered body would show (the transfer is 64 MiB under the race
// detector and 1 GiB otherwise).
//
// The sampled metric counts heap objects not yet swept, garbage included, and with
// the default GOGC of 100 the heap runs up to twice what is live before a collection.
// The test lowers GOGC while it measures so that the samples show what the transfer
// holds rather than the collector's pacing. That costs little: a transfer allocates
// about 10 bytes per KiB it moves (pooled buffers, no per-chunk copies), so the
// extra collections are few. With the default GOGC the process heap is at most
// twice the bound.
func TestBigTransfer(t *testing.T) {
	const window = 1 << 20
	const bigHeapBound = 8 << 20
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	for _, kind := range []transportKind{overTCP, overMTLS} {
		t.Run(string(kind), func(t *testing.T) {
			h := newHarnessWith(t, kind,
				func(c *ServerConfig) { c.Session.StreamWindow = window },
				func(c *ClientConfig) { c.Session.StreamWindow = window })
			tgt := bigTarget(t)
			hc := &http.Client{Transport: h.client}
			// Warm up: session, pools and buffers exist before the baseline.
			if err := bigDownload(hc, tgt.URL, 1<<20); err != nil {
				t.Fatal(err)
			}
			if err := bigUpload(hc, tgt.URL, 1<<20); err != nil {
				t.Fatal(err)
			}
			for _, dir := range []string{"download", "upload"} {
				runtime.GC()
				base := heapObjects()
				sampler := startHeapSampler()
				start := time.Now()
				var err error
				if dir == "download" {
					err = bigDownload(hc, tgt.URL, bigTransferSize)
				} else {
					err = bigUpload(hc, tgt.URL, bigTransferSize)
				}
				took := time.Since(start)
				peak := sampler.finish()
				if err != nil {
					t.Fatalf("%s: %v", dir, err)
				}
				growth := int64(peak) - int64(base)
				t.Logf("%s %d MiB over %s: %v (%.0f MiB/s), heap baseline %.1f MiB, peak growth %.2f MiB",
					dir, bigTransferSize>>20, kind, took.Round(time.Millisecond),
					float64(bigTransferSize)/(1<<20)/took.Seconds(), float64(base)/(1<<20), float64(growth)/(1<<20))
				if growth > bigHeapBound {
					t.Errorf("%s: heap grew by %.1f MiB, bound %d MiB", dir, float64(growth)/(1<<20), bigHeapBound>>20)
				}
			}
			waitFor(t, 5*time.Second, "streams to end", func() bool { return h.server.ActiveStreams() == 0 })
		})
	}
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func bigDownload(hc *http.Client, base string, n int64) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/download?n=%d", base, n), nil)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.ContentLength != n {
		return fmt.Errorf("content length %d, want %d", resp.ContentLength, n)
	}
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	c := &patternChecker{}
	if _, err := io.CopyBuffer(c, resp.Body, *buf); err != nil {
		return err
	}
	if c.off != n {
		return fmt.Errorf("downloaded %d bytes, want %d", c.off, n)
	}
	return nil
}

func bigUpload(hc *http.Client, base string, n int64) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// No length: the body goes chunked through the tunnel and to the target.
	req, _ := http.NewRequestWithContext(ctx, "POST", base+"/upload", io.NopCloser(&patternReader{n: n}))
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 || string(b) != strconv.FormatInt(n, 10) {
		return fmt.Errorf("upload: %d %s", resp.StatusCode, b)
	}
	return nil
}

// patterned returns n deterministic bytes.
func patterned(n int) []byte {
	b := make([]byte, n)
	fillPattern(b, 0)
	return b
}
