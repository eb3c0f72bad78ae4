package tunnel

import (
	"context"
	"io"
	"net"
	"testing"

	"github.com/fluidity-tunnel/fluidity/internal/relay"
	"github.com/fluidity-tunnel/fluidity/internal/testbin"
)

// BenchmarkRoundTrip measures one small HTTP request through the tunnel, target
// and all in-process.
func BenchmarkRoundTrip(b *testing.B) {
	for _, kind := range allTransports {
		b.Run(string(kind), func(b *testing.B) {
			h := newHarness(b, kind, nil)
			tgt := target(b)
			req := mustRequest("GET", tgt.URL+"/hello")
			b.ReportAllocs()
			defer reportCPU(b)()
			for b.Loop() {
				resp, err := h.client.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}

// BenchmarkConnectThroughput streams 1 MiB per iteration through one CONNECT
// stream to a target that discards it.
func BenchmarkConnectThroughput(b *testing.B) {
	for _, kind := range []transportKind{overTCP, overMTLS} {
		b.Run(string(kind), func(b *testing.B) {
			h := newHarness(b, kind, nil)
			addr, got := testbin.DiscardTarget(b, 0)
			conn, err := h.client.DialContext(context.Background(), "tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			chunk := patterned(1 << 20)
			b.SetBytes(int64(len(chunk)))
			b.ReportAllocs()
			defer reportCPU(b)()
			var sent int64
			for b.Loop() {
				n, err := conn.Write(chunk)
				if err != nil {
					b.Fatal(err)
				}
				sent += int64(n)
			}
			_ = conn.(interface{ CloseWrite() error }).CloseWrite()
			if n := <-got; n != sent {
				b.Fatalf("target received %d of %d bytes", n, sent)
			}
		})
	}
}

var _ net.Conn = (*stream)(nil)

// BenchmarkRoundTripParallel is BenchmarkRoundTrip with concurrent requests, the
// shape of a browser's load.
func BenchmarkRoundTripParallel(b *testing.B) {
	for _, kind := range []transportKind{overTCP, overMTLS} {
		b.Run(string(kind), func(b *testing.B) {
			h := newHarness(b, kind, func(c *ServerConfig) { c.MaxStreams = 1024 })
			tgt := target(b)
			b.ReportAllocs()
			b.SetParallelism(32)
			defer reportCPU(b)()
			b.RunParallel(func(pb *testing.PB) {
				req := mustRequest("GET", tgt.URL+"/hello")
				for pb.Next() {
					resp, err := h.client.RoundTrip(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}

// reportCPU adds the process's CPU time per operation (user and system, every
// goroutine: client, server and target alike) to b's results. On a shared machine
// it is steadier than the wall time per operation.
func reportCPU(b *testing.B) func() {
	start, ok := cpuTime()
	return func() {
		if end, _ := cpuTime(); ok && b.N > 0 {
			b.ReportMetric(float64(end-start)/float64(b.N), "cpu-ns/op")
		}
	}
}

// BenchmarkConnectDownload streams 1 MiB per iteration from a target through one
// CONNECT stream to the agent, which reads it the way the agent's relay does.
func BenchmarkConnectDownload(b *testing.B) {
	for _, kind := range []transportKind{overTCP, overMTLS} {
		b.Run(string(kind), func(b *testing.B) {
			h := newHarness(b, kind, nil)
			ln := listen(b)
			defer ln.Close()
			chunk := patterned(1 << 20)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				for {
					if _, err := c.Write(chunk); err != nil {
						return
					}
				}
			}()
			conn, err := h.client.DialContext(context.Background(), "tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			b.SetBytes(int64(len(chunk)))
			b.ReportAllocs()
			defer reportCPU(b)()
			bp := relay.GetBuffer()
			defer relay.PutBuffer(bp)
			buf := *bp
			for b.Loop() {
				for left := len(chunk); left > 0; {
					n, err := conn.Read(buf[:min(len(buf), left)])
					if err != nil {
						b.Fatal(err)
					}
					left -= n
				}
			}
		})
	}
}
