// Package sinks holds dlflow's terminal stages. Importing the package
// registers them in pipeline.DefaultRegistry; Register adds them to
// another registry. The stage types:
//
//   - `file.sink` (file.go): writes the download into OUTPUT.tmp,
//     sequentially or at offsets, keeps its resume state, and renames it to
//     OUTPUT when complete.
//   - `discard.sink` (discard.go): counts and drops the bytes, for
//     benchmarks.
//   - `stdout.sink` (stdout.go): writes the bytes in order to standard
//     output or the program's writer; no file, no resume.
//
// Two sinks live in backend packages, which register them when imported:
// `s3.sink` in sinks/s3, so that a program that does not upload does not
// link the S3 client (it resumes by this package's rules: Resumable,
// Identity), and `tar.extract` in sinks/archive. They share this
// package's file system calls through sinks/internal/fsx.
//
// TestPackageDocsListEveryStage holds this list to the registry.
package sinks
