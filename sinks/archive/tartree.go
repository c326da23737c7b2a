package archive

import "strings"

// pathTree is what an extraction made, by path component: the
// directories it made or found, and the symlinks it made. A member's
// parents are looked up by walking its name once, in time linear in the
// name's length; a map keyed by each parent's path would hash every
// prefix of the name, which is quadratic in its depth (a member 100,000
// directories deep hashed 10^10 bytes).
type pathTree struct {
	kids    map[string]*pathTree
	dir     bool
	symlink bool
}

func newPathTree() *pathTree { return &pathTree{dir: true} }

// node is the node of p (a path from memberPath, or "."), made on the way
// when create, else nil when p is not in the tree.
func (t *pathTree) node(p string, create bool) *pathTree {
	n := t
	if p == "." {
		return n
	}
	for p != "" {
		c := p
		if i := strings.IndexByte(p, '/'); i >= 0 {
			c, p = p[:i], p[i+1:]
		} else {
			p = ""
		}
		k := n.kids[c]
		if k == nil {
			if !create {
				return nil
			}
			if n.kids == nil {
				n.kids = map[string]*pathTree{}
			}
			k = &pathTree{}
			n.kids[c] = k
		}
		n = k
	}
	return n
}

// symlinkAbove is the first proper parent of p that is a
// symlink the extraction made, or "" when there is none.
func (t *pathTree) symlinkAbove(p string) string {
	n := t
	for i := 0; i < len(p); {
		j := strings.IndexByte(p[i:], '/')
		if j < 0 {
			return ""
		}
		n = n.kids[p[i:i+j]]
		switch {
		case n == nil:
			return ""
		case n.symlink:
			return p[:i+j]
		}
		i += j + 1
	}
	return ""
}

// dirsUpTo reports whether p and each of its parents are directories the
// extraction made or found.
func (t *pathTree) dirsUpTo(p string) bool {
	if p == "." {
		return true
	}
	for n, rest := t, p; ; {
		c, after, more := strings.Cut(rest, "/")
		n = n.kids[c]
		if n == nil || !n.dir {
			return false
		}
		if !more {
			return true
		}
		rest = after
	}
}

// markDirs records p and each of its parents as directories.
func (t *pathTree) markDirs(p string) {
	if p == "." {
		return
	}
	for n, rest := t, p; ; {
		c, after, more := strings.Cut(rest, "/")
		n = n.node(c, true)
		n.dir = true
		if !more {
			return
		}
		rest = after
	}
}
