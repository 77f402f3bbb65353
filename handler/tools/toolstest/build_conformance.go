//go:build conformance

package toolstest

// fixturesBuilt says whether this test binary's tool catalog has the
// conformance fixtures (the conformance build tag).
const fixturesBuilt = true
