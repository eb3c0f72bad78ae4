package platforms

func name() string { return "darwin" }
