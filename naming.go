package dlflow

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/dlflow/dlflow/httpx"
	"github.com/dlflow/dlflow/pipeline"
	"github.com/dlflow/dlflow/sinks"
)

// maxName is the longest name the library gives an output it names: the
// file sink writes PATH.tmp, PATH.tmp.state and PATH.tmp.state.new beside
// it, and each must fit in the 255 bytes a name may have on the usual file
// systems.
const maxName = 255 - sinks.MaxSuffix

// fallbackName is the output's name when neither the server nor the URL
// offers a usable one.
const fallbackName = "download"

// defaultName names an output from what the probe learned: the server's
// Content-Disposition name, else the last segment of the URL's path, made
// safe (httpx.SafeFileName: a base name, no control characters, no
// leading dots), with a leading "-" replaced so that no later command
// takes the file for an option, and cut to maxName bytes.
func defaultName(res *pipeline.Resource) string {
	name := res.FileName
	if name == "" {
		if u, err := url.Parse(res.URL); err == nil {
			name = httpx.SafeFileName(path.Base(u.Path))
		}
	}
	if strings.HasPrefix(name, "-") {
		name = "_" + name[1:]
	}
	name = httpx.CutName(name, maxName)
	if name == "" || name == "_" {
		return fallbackName
	}
	return name
}

// placeIn returns where name goes in dir: name itself without a dir.
// With one, name must be a relative path that stays inside dir; the
// directories on the way must not be symlinks (which could lead out of
// dir), and missing ones are created, dir itself included (0o755, as
// mkdir -p: a batch into a new directory must not fail on its absence).
// placeOutput is placeIn for a file, and an object URL (s3://bucket/key)
// as it is: Dir does not apply to it.
func placeOutput(dir, name string) (string, error) {
	if sinks.IsObjectURL(name) {
		return name, nil
	}
	return placeIn(dir, name)
}

func placeIn(dir, name string) (string, error) {
	if dir == "" {
		return name, nil
	}
	if !filepath.IsLocal(name) {
		return "", fmt.Errorf("%q is not a relative path inside %s", name, dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("output directory: %w", err)
	}
	p := dir
	parts := strings.Split(filepath.Clean(name), string(filepath.Separator))
	for _, part := range parts[:len(parts)-1] {
		p = filepath.Join(p, part)
		st, err := os.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := os.Mkdir(p, 0o777); err != nil && !errors.Is(err, fs.ErrExist) {
				return "", err
			}
		case err != nil:
			return "", err
		case st.Mode()&fs.ModeSymlink != 0:
			return "", fmt.Errorf("%q leads through the symlink %s, which may point out of %s", name, p, dir)
		case !st.IsDir():
			return "", fmt.Errorf("%q: %s is not a directory", name, p)
		}
	}
	return filepath.Join(dir, name), nil
}
