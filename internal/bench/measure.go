package bench

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Transfer is the outcome of one bulk transfer.
type Transfer struct {
	Bytes int64
	Time  time.Duration
}

// MBps is the transfer's throughput in MB/s.
func (t Transfer) MBps() float64 { return MBps(t.Bytes, t.Time) }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// Download fetches n bytes from the target over one stream opened with
// p.Dial. It stops early at limit and reports what arrived by then.
func Download(ctx context.Context, p *Path, target string, n int64, limit time.Duration) (Transfer, error) {
	return DownloadCounting(ctx, p, target, n, limit, nil)
}

// DownloadCounting is Download that also adds every chunk received to
// progress, if set.
func DownloadCounting(ctx context.Context, p *Path, target string, n int64, limit time.Duration, progress *atomic.Int64) (Transfer, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	c, err := p.Dial(dctx, target)
	cancel()
	if err != nil {
		return Transfer{}, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	start := time.Now()
	_ = c.SetDeadline(start.Add(limit))
	if err := request(c, http.MethodGet, target, fmt.Sprintf("/bulk?n=%d", n), false, false, -1); err != nil {
		return Transfer{}, err
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(c, 64<<10), nil)
	if err != nil {
		return Transfer{}, err
	}
	// Closed once the Transfer is measured. A download cut short is past its
	// deadline, or ctx's (stop sets one), so closing does not wait for the rest.
	defer resp.Body.Close()
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	var got int64
	for got < n {
		m, err := resp.Body.Read(*buf)
		got += int64(m)
		if progress != nil {
			progress.Add(int64(m))
		}
		if err != nil {
			if ctx.Err() != nil {
				return Transfer{}, ctx.Err()
			}
			if isTimeout(err) && got > 0 {
				break
			}
			if err == io.EOF && got == n {
				break
			}
			return Transfer{}, fmt.Errorf("download after %d bytes: %w", got, err)
		}
	}
	return Transfer{Bytes: got, Time: time.Since(start)}, nil
}

// Upload POSTs n bytes to the target's sink over one stream opened with
// p.Dial and waits for its answer. It stops early at limit and reports what
// the sink had received by then.
func Upload(ctx context.Context, p *Path, t *Target, n int64, limit time.Duration) (Transfer, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	c, err := p.Dial(dctx, t.Addr)
	cancel()
	if err != nil {
		return Transfer{}, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	before := t.Sunk()
	start := time.Now()
	_ = c.SetDeadline(start.Add(limit))
	err = request(c, http.MethodPost, t.Addr, "/sink", false, false, n)
	for left := n; err == nil && left > 0; {
		chunk := bulkChunk[:min(int64(len(bulkChunk)), left)]
		_, err = c.Write(chunk)
		left -= int64(len(chunk))
	}
	if err == nil {
		err = readResponse(bufio.NewReader(c), http.MethodPost)
	}
	switch {
	case ctx.Err() != nil:
		return Transfer{}, ctx.Err()
	case err == nil:
		return Transfer{Bytes: n, Time: time.Since(start)}, nil
	case isTimeout(err) && t.Sunk() > before:
		return Transfer{Bytes: t.Sunk() - before, Time: time.Since(start)}, nil
	default:
		return Transfer{}, fmt.Errorf("upload: %w", err)
	}
}

// SmallLoad runs conns keep-alive connections issuing small GETs through
// the path for dur: plain http:// requests, to the path's HTTP proxy where
// it has one. It returns requests per second and every latency (one per
// request measured). measuring, if not nil, is called once the warm-up is over,
// as the measured requests start.
func SmallLoad(ctx context.Context, p *Path, target string, conns int, dur time.Duration, measuring func()) (float64, []time.Duration, error) {
	tr := p.Transport(conns)
	defer tr.CloseIdleConnections()
	return keepAliveLoad(ctx, &http.Client{Transport: tr, Timeout: 10 * time.Second}, "http://"+target+"/small", conns, dur, measuring)
}

// keepAliveLoad runs conns workers issuing GETs of url with client for dur,
// after one warm-up request each (so the measurement sees only reuse).
func keepAliveLoad(ctx context.Context, client *http.Client, url string, conns int, dur time.Duration, measuring func()) (float64, []time.Duration, error) {
	get := func() error { return get(ctx, client, url) }
	// Open every connection first, so the measurement sees only reuse.
	var wg sync.WaitGroup
	errs := make([]error, conns)
	for i := range conns {
		wg.Go(func() { errs[i] = get() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, nil, fmt.Errorf("warm-up: %w", err)
	}
	lats := make([][]time.Duration, conns)
	var failed atomic.Int64
	if measuring != nil {
		measuring()
	}
	start := time.Now()
	end := start.Add(dur)
	for i := range conns {
		wg.Go(func() {
			for time.Now().Before(end) && ctx.Err() == nil {
				t0 := time.Now()
				if err := get(); err != nil {
					errs[i] = err
					failed.Add(1)
					continue
				}
				lats[i] = append(lats[i], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	if f := failed.Load(); f > int64(len(all)/100) {
		return 0, nil, fmt.Errorf("%d of %d requests failed: %w", f, f+int64(len(all)), errors.Join(errs...))
	}
	return float64(len(all)) / elapsed.Seconds(), all, nil
}

// get GETs url with client, reads the body and fails on a status other
// than 200.
func get(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, err = drain(resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %s", resp.Status)
	}
	return err
}

// NewConns opens n connections one after another, each carrying one small
// request, and returns each one's latency. plain selects the path's plain
// HTTP proxy mode where it has one.
func NewConns(ctx context.Context, p *Path, target string, plain bool, n int) ([]time.Duration, error) {
	lats := make([]time.Duration, 0, n)
	for range n {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		t0 := time.Now()
		err := p.OneShot(rctx, target, plain)
		d := time.Since(t0)
		cancel()
		if err != nil {
			return nil, err
		}
		lats = append(lats, d)
	}
	return lats, nil
}

// HeadOfLine runs a bulk download through the path and, alongside it, small
// requests on one keep-alive connection for dur. It returns the small
// requests' latencies and the bulk throughput meanwhile.
func HeadOfLine(ctx context.Context, p *Path, t *Target, dur time.Duration) ([]time.Duration, float64, error) {
	return HeadOfLineWith(ctx, p, t, dur, Background{Downloads: 1})
}

// Background is the bulk traffic a head-of-line measurement runs beside its
// small requests.
type Background struct {
	Downloads int  // concurrent endless downloads
	Upload    bool // one endless upload
}

func (bg Background) String() string {
	var parts []string
	switch {
	case bg.Downloads == 1:
		parts = append(parts, "a download")
	case bg.Downloads > 1:
		parts = append(parts, fmt.Sprintf("%d downloads", bg.Downloads))
	}
	if bg.Upload {
		parts = append(parts, "an upload")
	}
	return strings.Join(parts, " and ")
}

// HeadOfLineWith is HeadOfLine beside bg's bulk transfers, each on its own
// stream. The throughput returned is theirs, summed.
func HeadOfLineWith(ctx context.Context, p *Path, t *Target, dur time.Duration, bg Background) ([]time.Duration, float64, error) {
	bctx, cancel := context.WithCancel(ctx)
	var moved atomic.Int64
	n := bg.Downloads
	if bg.Upload {
		n++
	}
	bulkErr := make(chan error, n)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for range bg.Downloads {
		wg.Go(func() {
			_, err := DownloadCounting(bctx, p, t.Addr, 1<<50, dur+time.Minute, &moved)
			bulkErr <- err
		})
	}
	if bg.Upload {
		wg.Go(func() { bulkErr <- endlessUpload(bctx, p, t.Addr, &moved) })
	}
	// Let the bulk transfers fill the pipe first.
	for deadline := time.Now().Add(5 * time.Second); moved.Load() < int64(n)*32<<20; {
		if time.Now().After(deadline) {
			return nil, 0, fmt.Errorf("bulk transfers did not start: %d bytes moved", moved.Load())
		}
		select {
		case err := <-bulkErr:
			return nil, 0, fmt.Errorf("bulk transfer: %w", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	c, err := p.Dial(dctx, t.Addr)
	dcancel()
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(dur + 10*time.Second))
	br := bufio.NewReader(c)
	var lats []time.Duration
	m0, t0 := moved.Load(), time.Now()
	for time.Since(t0) < dur && ctx.Err() == nil {
		s := time.Now()
		if err := request(c, http.MethodGet, t.Addr, "/small", false, false, -1); err != nil {
			return nil, 0, err
		}
		if err := readResponse(br, http.MethodGet); err != nil {
			return nil, 0, err
		}
		lats = append(lats, time.Since(s))
	}
	bulk := MBps(moved.Load()-m0, time.Since(t0))
	select {
	case err := <-bulkErr:
		return nil, 0, fmt.Errorf("bulk transfer ended early: %w", err)
	default:
	}
	return lats, bulk, ctx.Err()
}

// endlessUpload POSTs to the target's sink until ctx ends, adding every
// chunk written to progress. Its end by ctx is not an error.
func endlessUpload(ctx context.Context, p *Path, target string, progress *atomic.Int64) error {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	c, err := p.Dial(dctx, target)
	cancel()
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	err = request(c, http.MethodPost, target, "/sink", false, false, 1<<50)
	for err == nil {
		var m int
		m, err = c.Write(bulkChunk)
		progress.Add(int64(m))
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("upload: %w", err)
}

// IdleStreams opens n connections to the target through the path and
// leaves them idle. The caller closes them.
func IdleStreams(ctx context.Context, p *Path, target string, n int) ([]net.Conn, error) {
	conns := make([]net.Conn, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			conns[i], errs[i] = p.Dial(dctx, target)
		})
	}
	wg.Wait()
	failed, first := 0, error(nil)
	for _, err := range errs {
		if err != nil {
			failed++
			first = cmp.Or(first, err)
		}
	}
	if failed > 0 {
		CloseAll(conns)
		return nil, fmt.Errorf("%d of %d failed, first: %w", failed, n, first)
	}
	return conns, nil
}

// CloseAll closes every non-nil conn.
func CloseAll(conns []net.Conn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}
