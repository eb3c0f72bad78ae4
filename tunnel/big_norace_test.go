//go:build !race

package tunnel

// bigTransferSize is the 1 GiB each way that the memory bound is proven for.
const bigTransferSize = 1 << 30
