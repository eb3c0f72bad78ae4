package platforms

// Only darwin's build has this wrong body: checked, because it is the main
// module's own code.
func wrongOnDarwinArm64() int {
	var x int = archWord
	return x
}
