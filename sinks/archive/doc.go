// Package archive holds the tar.extract stage, which unpacks a tar stream
// (or a zip, spooled) into a directory that appears when complete. It
// lives apart from package sinks, as a backend that registers when
// imported, so that a program that does not extract does not link the
// archive readers. Importing the package registers the stage type in
// pipeline.DefaultRegistry; Register adds it to another registry. The
// stage type:
//
//   - `tar.extract` (tarextract.go): unpacks a tar stream (or a zip,
//     spooled) into a directory that appears when complete.
//
// A compressed archive also needs the decompress stage (package
// stages/decompress). The dlflow command imports both; a library user who
// extracts (dlflow.Request.Extract) imports them for their side effect:
//
//	import (
//		_ "github.com/dlflow/dlflow/sinks/archive"
//		_ "github.com/dlflow/dlflow/stages/decompress"
//	)
//
// Its errors wrap those of package sinks (sinks.ErrOutputExists), which
// the dlflow package exports.
//
// TestPackageDocsListEveryStage holds this list to the registry.
package archive
