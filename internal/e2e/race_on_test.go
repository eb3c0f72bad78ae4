//go:build race

package e2e

// raceEnabled is true when the tests run under the race detector: the big
// transfers shrink so that the package stays fast (the daemons themselves are
// built without it, so their memory bounds do not change).
const raceEnabled = true
