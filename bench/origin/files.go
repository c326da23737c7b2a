package origin

import (
	"fmt"
	"strconv"
	"strings"
)

// filesPrefix is the URL path under which Options.Files are served.
const filesPrefix = "/files/"

// FilePath is the URL path of file i of Options.Files: /files/I.bin.
func FilePath(i int) string { return filesPrefix + strconv.Itoa(i) + ".bin" }

// FileSeed is the content seed of file i of Options.Files on a server
// whose Options.Seed is seed: every file has content of its own, unlike
// any other file's and the main file's (and its changed versions', which
// take seed+1, seed+2, ...).
func FileSeed(seed uint64, i int) uint64 { return mix(seed ^ (uint64(i)+1)<<40) }

// FileURL is the full URL of file i of Options.Files.
func (s *Server) FileURL(i int) string { return s.BaseURL() + FilePath(i) }

// fileIndex is the index of the file of Options.Files that path names.
func (s *Server) fileIndex(path string) (int, bool) {
	rest, ok := strings.CutPrefix(path, filesPrefix)
	if !ok {
		return 0, false
	}
	digits, ok := strings.CutSuffix(rest, ".bin")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(digits)
	if err != nil || i < 0 || i >= s.opts.Files || strconv.Itoa(i) != digits {
		return 0, false
	}
	return i, true
}

// fileResource is file i of Options.Files; it never changes.
func (s *Server) fileResource(i int) resource {
	seed := FileSeed(s.opts.Seed, i)
	return newResource(seed, fmt.Sprintf(`"%x-%x"`, s.opts.Size, seed), s.opts.LastModified)
}
