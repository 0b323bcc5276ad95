package configs

import "embed"

// Files holds the shipped configurations and policies (demo.yaml, example.yaml and
// policies/), so that `portcullis demo` runs from any directory.
//
//go:embed demo.yaml example.yaml policies
var Files embed.FS
