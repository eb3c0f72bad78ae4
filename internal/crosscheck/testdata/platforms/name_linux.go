package platforms

func name() string { return "linux" }
