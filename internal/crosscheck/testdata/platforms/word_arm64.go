package platforms

const archWord = "eight"
