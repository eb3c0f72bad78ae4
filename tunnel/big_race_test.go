//go:build race

package tunnel

// bigTransferSize keeps TestBigTransfer quick under the race detector; the test
// script runs the full size without it.
const bigTransferSize = 64 << 20
