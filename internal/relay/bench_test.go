package relay

import (
	"io"
	"testing"
)

// chunkReader yields n bytes in reads of at most chunk bytes, like a socket.
type chunkReader struct {
	n, chunk int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	k := min(len(p), r.chunk, r.n)
	r.n -= k
	return k, nil
}

// BenchmarkCopy is the copy path of every relay (CONNECT, WebSocket, bodies). Per
// call it allocates a few small wrappers, not a buffer: that comes from the pool
// (refilled only after a GC empties it).
func BenchmarkCopy(b *testing.B) {
	const size = 1 << 20
	b.ReportAllocs()
	b.SetBytes(size)
	for b.Loop() {
		if n, err := Copy(io.Discard, &chunkReader{n: size, chunk: 16 << 10}); err != nil || n != size {
			b.Fatalf("copied %d, %v", n, err)
		}
	}
}

// BenchmarkRunTCP relays 1 MiB per iteration between two loopback TCP connections
// through Run, both directions' goroutines included.
func BenchmarkRunTCP(b *testing.B) {
	const size = 1 << 20
	b.ReportAllocs()
	b.SetBytes(size)
	payload := make([]byte, size)
	for b.Loop() {
		aClient, aRelay := tcpPair(b)
		bRelay, bServer := tcpPair(b)
		done := make(chan Result, 1)
		go func() { done <- Run(aRelay, bRelay, Options{}) }()
		go func() {
			_, _ = aClient.Write(payload)
			_ = aClient.CloseWrite()
		}()
		n, err := io.Copy(io.Discard, bServer)
		if err != nil || n != size {
			b.Fatalf("relayed %d, %v", n, err)
		}
		_ = bServer.Close()
		<-done
		_ = aClient.Close()
	}
}
