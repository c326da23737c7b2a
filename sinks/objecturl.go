package sinks

import (
	"errors"
	"strings"
)

// IsObjectURL reports whether output names an object of an S3-compatible
// store (s3://bucket/key) rather than a file. Such output needs the s3.sink
// of package sinks/s3, which registers when imported; this package only
// tells the name apart, without linking an S3 client.
func IsObjectURL(output string) bool { return strings.HasPrefix(output, "s3://") }

// ErrNoBucket is what an object store sink's error wraps (the
// *s3.NoBucketError of package sinks/s3) when the bucket of its object
// does not exist. Test for it with errors.Is; the dlflow package exports
// it as dlflow.ErrNoBucket.
var ErrNoBucket = errors.New("no such bucket")
