package platforms

const archWord = 8
