package e2e

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

// bigSize is what the memory tests move each way: 1 GiB, or 64 MiB under the
// race detector, which slows the test process (the daemons are plain builds).
func bigSize() int64 {
	if raceEnabled {
		return 64 * mib
	}
	return 1 << 30
}

// growthBound is how much the agent's and the server's resident set (VmHWM over
// the VmRSS before the transfer) may grow while 1 GiB streams through them; each
// transfer gets fresh daemons.
//
// Memory per stream is bounded by the yamux stream window, whatever the size of
// the transfer: the receiver buffers at most one window of unread bytes, which
// yamux's regrowing receive buffer and the GC turn into about four windows of
// RSS. Observed on a 2-CPU Linux machine (Go 1.26, plain builds, 1 GiB) with the
// default 4 MiB window: the sending side grows by 2-5 MiB, the receiving side
// (the agent on downloads, the server on uploads) by 25-32 MiB. With the earlier
// 16 MiB window it grew by 58-124 MiB; with 1 MiB, by 3-7 MiB. A daemon that
// buffered whole bodies would blow through the bound at once.
const growthBound = 48 * mib

const blockSize = 64 << 10

// blockStream generates n bytes in 64 KiB blocks, each stamped with its index,
// so that a lost, repeated or reordered block changes the checksum.
type blockStream struct {
	n, off int64
	buf    []byte
	pos    int
}

func newBlockStream(n int64) *blockStream {
	b := make([]byte, blockSize)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return &blockStream{n: n, buf: b, pos: blockSize}
}

func (s *blockStream) Read(p []byte) (int, error) {
	if s.off >= s.n {
		return 0, io.EOF
	}
	if s.pos == blockSize {
		binary.BigEndian.PutUint64(s.buf, uint64(s.off/blockSize))
		s.pos = 0
	}
	k := copy(p, s.buf[s.pos:])
	if rem := s.n - s.off; int64(k) > rem {
		k = int(rem)
	}
	s.pos += k
	s.off += int64(k)
	return k, nil
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// expectedCRC is the checksum of newBlockStream(n).
func expectedCRC(n int64) uint32 {
	h := crc32.New(crcTable)
	_, _ = io.CopyBuffer(h, newBlockStream(n), make([]byte, blockSize))
	return h.Sum32()
}

// peakWatcher samples VmRSS of some processes while a transfer runs and reads
// their VmHWM at the end.
type peakWatcher struct {
	procs map[string]int
	base  map[string]int64 // VmRSS when the watch began
	stop  chan struct{}
	done  sync.WaitGroup
	mu    sync.Mutex
	max   map[string]int64
}

func watchPeaks(procs map[string]int) *peakWatcher {
	w := &peakWatcher{procs: procs, base: map[string]int64{}, stop: make(chan struct{}), max: map[string]int64{}}
	for name, pid := range procs {
		w.base[name], _ = vmRSS(pid)
	}
	w.done.Add(1)
	go func() {
		defer w.done.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			for name, pid := range procs {
				if rss, err := vmRSS(pid); err == nil {
					w.mu.Lock()
					w.max[name] = max(w.max[name], rss)
					w.mu.Unlock()
				}
			}
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

// finish stops sampling and checks every process's growth against growthBound.
func (w *peakWatcher) finish(t *testing.T, what string) {
	t.Helper()
	close(w.stop)
	w.done.Wait()
	for name, pid := range w.procs {
		hwm, err := vmHWM(pid)
		if err != nil {
			t.Fatalf("%s VmHWM: %v", name, err)
		}
		t.Logf("%s: %s peak RSS (VmHWM) %.1f MiB, highest sampled VmRSS %.1f MiB, VmRSS before %.1f MiB",
			what, name, float64(hwm)/mib, float64(w.max[name])/mib, float64(w.base[name])/mib)
		if growth := hwm - w.base[name]; growth > growthBound {
			t.Errorf("%s: %s grew by %.1f MiB (peak %.1f MiB), over the bound of %d MiB", what, name,
				float64(growth)/mib, float64(hwm)/mib, growthBound/mib)
		}
	}
}

// TestBigDownloadMemory streams bigSize() bytes from a local target through the
// real agent and server, with a Content-Length and chunked, and checks the bytes
// and both daemons' peak memory.
func TestBigDownloadMemory(t *testing.T) {
	size := bigSize()
	want := expectedCRC(size)
	target := httpTarget(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		if r.URL.Query().Get("chunked") == "" {
			w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		}
		_, _ = io.CopyBuffer(w, newBlockStream(size), make([]byte, blockSize))
	}))
	for _, chunked := range []bool{false, true} {
		name := map[bool]string{false: "ContentLength", true: "Chunked"}[chunked]
		t.Run(name, func(t *testing.T) {
			// A fresh pair of daemons for each transfer: VmHWM is per process.
			s := newStack(t, stackOpts{})
			c := s.client(t, nil)
			w := watchPeaks(map[string]int{"agent": s.agent.pid(), "server": s.server.pid()})
			start := time.Now()
			u := target.URL + "/big"
			if chunked {
				u += "?chunked=1"
			}
			resp, err := c.Get(u)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			wantLength := size
			if chunked {
				wantLength = -1
			}
			if resp.StatusCode != http.StatusOK || resp.ContentLength != wantLength {
				t.Fatalf("status %d, Content-Length %d; want 200, %d", resp.StatusCode, resp.ContentLength, wantLength)
			}
			h := crc32.New(crcTable)
			n, err := io.CopyBuffer(h, resp.Body, make([]byte, blockSize))
			elapsed := time.Since(start)
			w.finish(t, "download "+name)
			if err != nil || n != size {
				t.Fatalf("downloaded %d of %d bytes: %v", n, size, err)
			}
			if h.Sum32() != want {
				t.Fatalf("downloaded bytes differ from those sent (crc %08x, want %08x)", h.Sum32(), want)
			}
			t.Logf("download %s: %d MiB in %v (%.0f MiB/s)", name, size/mib, elapsed.Round(time.Millisecond), float64(size)/mib/elapsed.Seconds())
		})
	}
}

// TestBigUploadMemory streams bigSize() bytes to a local target through the real
// agent and server, with a Content-Length and chunked, and checks the bytes and
// both daemons' peak memory.
func TestBigUploadMemory(t *testing.T) {
	size := bigSize()
	want := expectedCRC(size)
	target := httpTarget(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := crc32.New(crcTable)
		n, err := io.CopyBuffer(h, r.Body, make([]byte, blockSize))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%d %08x", n, h.Sum32())
	}))
	for _, chunked := range []bool{false, true} {
		name := map[bool]string{false: "ContentLength", true: "Chunked"}[chunked]
		t.Run(name, func(t *testing.T) {
			s := newStack(t, stackOpts{})
			c := s.client(t, nil)
			w := watchPeaks(map[string]int{"agent": s.agent.pid(), "server": s.server.pid()})
			start := time.Now()
			body := io.Reader(newBlockStream(size))
			if chunked {
				body = struct{ io.Reader }{body} // hides the type: no length, chunked
			}
			req, err := http.NewRequest(http.MethodPost, target.URL+"/big", body)
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = size
			if chunked {
				req.ContentLength = -1
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			elapsed := time.Since(start)
			w.finish(t, "upload "+name)
			if err != nil {
				t.Fatal(errors.Join(errors.New("reading the answer"), err))
			}
			if resp.StatusCode != http.StatusOK || string(got) != fmt.Sprintf("%d %08x", size, want) {
				t.Fatalf("target answered %d %q, want 200 %q", resp.StatusCode, got, fmt.Sprintf("%d %08x", size, want))
			}
			t.Logf("upload %s: %d MiB in %v (%.0f MiB/s)", name, size/mib, elapsed.Round(time.Millisecond), float64(size)/mib/elapsed.Seconds())
		})
	}
}
