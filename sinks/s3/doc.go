// Package s3 holds the s3.sink stage, which uploads a download to an
// object of an S3-compatible store while it downloads. It lives apart from
// package sinks so that a program that does not upload does not link the
// S3 client (github.com/minio/minio-go). Importing the package registers
// the stage type in pipeline.DefaultRegistry; Register adds it to another
// registry. The stage type:
//
//   - `s3.sink` (s3.go): uploads the bytes to an S3-compatible object
//     store as a multipart upload, with no local copy.
//
// The dlflow command imports it; a library user who downloads to
// s3://bucket/key imports it for its side effect:
//
//	import _ "github.com/dlflow/dlflow/sinks/s3"
//
// It resumes by the rules of the file sink (sinks.Resumable,
// sinks.Identity), and its errors wrap those of package sinks
// (sinks.ErrOutputExists, sinks.ErrNoBucket), which the dlflow package
// exports.
//
// TestPackageDocsListEveryStage holds this list to the registry.
package s3
