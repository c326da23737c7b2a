package cmd

// The backends: packages of stage types that register when imported, which
// the library leaves out so that a program that only downloads files does
// not link them. The command offers every feature, so it imports them all;
// a custom binary built on Main gets them too.
import (
	_ "github.com/dlflow/dlflow/sinks/archive"     // tar.extract: --extract
	_ "github.com/dlflow/dlflow/sinks/s3"          // s3.sink: -o s3://bucket/key
	_ "github.com/dlflow/dlflow/stages/decompress" // decompress: --extract
)
