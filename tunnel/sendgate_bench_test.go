package tunnel

import (
	"context"
	"io"
	"testing"

	"github.com/libp2p/go-yamux/v5"
)

// BenchmarkStreamWrite measures a stream's write path on a session with a send
// gate, over an in-memory pipe whose far end discards: an interactive stream's
// small writes (which never wait at the gate) and a bulk stream's frames
// (which pass it one at a time, waiting while it is shut).
func BenchmarkStreamWrite(b *testing.B) {
	tests := []struct {
		name string
		size int
		bulk bool
	}{
		{"interactive", 512, false},
		{"bulk", 64 << 10, true},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			gate := newSendGate()
			client, _ := gatePair(b, gate, nil, func(_ byte, st *yamux.Stream) { _, _ = io.Copy(io.Discard, st) })
			ys, err := client.OpenStream(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			st := newStream(ys, gate)
			defer st.Close()
			p := make([]byte, tt.size)
			b.SetBytes(int64(tt.size))
			b.ReportAllocs()
			for b.Loop() {
				if !tt.bulk {
					// A loop writes faster than any interactive stream: forget
					// what it wrote so that it stays interactive.
					st.pace = pace{}
				}
				if _, err := st.Write(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
