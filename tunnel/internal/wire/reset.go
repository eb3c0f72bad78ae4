package wire

// Reset codes travel in a yamux stream reset (the length field of a window-update
// frame with the RST flag, as github.com/libp2p/go-yamux writes it). They are
// HTTP/2's (RFC 9113 §7), so that their meaning needs no new words.
const (
	// ResetNoError follows a complete answer: the server needs no more of the
	// request body (RFC 9113 §8.1). The receiver keeps everything it has read.
	ResetNoError uint32 = 0x0
	// ResetProtocol: the peer broke this specification on this stream.
	ResetProtocol uint32 = 0x1
	// ResetInternal: the sender could not complete what it was sending (a target
	// failed mid-body); what was received is truncated.
	ResetInternal uint32 = 0x2
	// ResetRefused: the stream was refused before any work was done on it, so it
	// is safe to retry.
	ResetRefused uint32 = 0x7
	// ResetCancel: the sender no longer needs the stream (an abort).
	ResetCancel uint32 = 0x8
)

// ResetName names a reset code for logs and errors.
func ResetName(code uint32) string {
	switch code {
	case ResetNoError:
		return "no_error"
	case ResetProtocol:
		return "protocol_error"
	case ResetInternal:
		return "internal_error"
	case ResetRefused:
		return "refused_stream"
	case ResetCancel:
		return "cancel"
	}
	return "unknown"
}
