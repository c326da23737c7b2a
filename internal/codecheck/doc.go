// Package codecheck holds tests of rules the whole repository keeps,
// such as the length of functions. It has no code of its own.
package codecheck
