package wire_test

import (
	"bytes"
	"fmt"
	"io"
	"log"

	"github.com/fluidity-tunnel/fluidity/tunnel/internal/wire"
)

func ExampleRead() {
	// The agent opens a stream with a connect frame; raw bytes follow it.
	frame, err := wire.Append(nil, wire.TypeConnect, wire.ConnectRequest{Addr: "example.com:443"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("prefix % x\n", frame[:wire.PrefixSize])
	fmt.Printf("header %s\n", frame[wire.PrefixSize:])
	stream := bytes.NewReader(append(frame, "\x16\x03\x01"...))

	// The server reads the frame, and only the frame.
	var req wire.Request
	if err := wire.Read(stream, 0, &req); err != nil {
		log.Fatal(err)
	}
	fmt.Println(req.Type, req.Connect().Addr)
	rest, _ := io.ReadAll(stream)
	fmt.Printf("then %q\n", rest)
	// Output:
	// prefix 46 4c 44 59 02 00 00 00 37
	// header {"type":"connect","payload":{"addr":"example.com:443"}}
	// connect example.com:443
	// then "\x16\x03\x01"
}
