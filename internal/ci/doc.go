// Package ci holds only tests: they keep the GitHub Actions workflow
// (.github/workflows/ci.yml) running the same suite as `make test` and .ci/run.
package ci
