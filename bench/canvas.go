package bench

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// canvas is what a plot draws on: an SVG document or a PNG image, so that
// both show the same picture. Coordinates are pixels from the top left.
type canvas interface {
	rect(x, y, w, h float64, fill, title string)
	line(x1, y1, x2, y2 float64, stroke string, width float64)
	text(x, y float64, s string, st textStyle)
}

// textStyle is how a text is drawn: anchored at its start, middle or end,
// bold or not, in a color ("" is black).
type textStyle struct {
	anchor string // "start" (default), "middle", "end"
	bold   bool
	color  string
}

// charWidth is the width of a character of the plots' 13 px font: the
// PNG's fixed font is 7 px wide, and a sans-serif font of 13 px averages
// under it, so a column sized with it holds its labels in both forms.
const charWidth = 7.0

// textWidth is the width a text needs on either canvas.
func textWidth(s string) float64 { return charWidth * float64(len([]rune(s))) }

// svgCanvas writes SVG elements.
type svgCanvas struct{ b bytes.Buffer }

func newSVG(w, h int) *svgCanvas {
	c := &svgCanvas{}
	fmt.Fprintf(&c.b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="13">`+"\n", w, h, w, h)
	fmt.Fprintf(&c.b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	return c
}

func (c *svgCanvas) rect(x, y, w, h float64, fill, title string) {
	if title == "" {
		fmt.Fprintf(&c.b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", x, y, w, h, fill)
		return
	}
	fmt.Fprintf(&c.b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s</title></rect>`+"\n", x, y, w, h, fill, esc(title))
}

func (c *svgCanvas) line(x1, y1, x2, y2 float64, stroke string, width float64) {
	fmt.Fprintf(&c.b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="%.1f"/>`+"\n", x1, y1, x2, y2, stroke, width)
}

func (c *svgCanvas) text(x, y float64, s string, st textStyle) {
	var attrs []string
	if st.anchor != "" && st.anchor != "start" {
		attrs = append(attrs, fmt.Sprintf(`text-anchor="%s"`, st.anchor))
	}
	if st.bold {
		attrs = append(attrs, `font-weight="bold"`)
	}
	if st.color != "" {
		attrs = append(attrs, fmt.Sprintf(`fill="%s"`, st.color))
	}
	fmt.Fprintf(&c.b, `<text x="%.1f" y="%.1f" %s>%s</text>`+"\n", x, y, strings.Join(attrs, " "), esc(s))
}

// bytes closes the document and checks that it is well-formed.
func (c *svgCanvas) bytes() ([]byte, error) {
	c.b.WriteString("</svg>\n")
	data := c.b.Bytes()
	if err := xml.Unmarshal(data, new(struct{})); err != nil {
		return nil, fmt.Errorf("generated SVG is not well-formed: %w", err)
	}
	return data, nil
}

// pngCanvas draws into an image with a fixed 7x13 font.
type pngCanvas struct{ img *image.RGBA }

func newPNG(w, h int) *pngCanvas {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	return &pngCanvas{img: img}
}

func (c *pngCanvas) rect(x, y, w, h float64, fill, _ string) {
	r := image.Rect(int(math.Round(x)), int(math.Round(y)), int(math.Round(x+w)), int(math.Round(y+h)))
	draw.Draw(c.img, r, image.NewUniform(parseColor(fill)), image.Point{}, draw.Over)
}

// line draws a line of the given width by stepping along it.
func (c *pngCanvas) line(x1, y1, x2, y2 float64, stroke string, width float64) {
	col := parseColor(stroke)
	steps := int(math.Max(math.Abs(x2-x1), math.Abs(y2-y1))) + 1
	half := int(math.Max(width, 1) / 2)
	for i := 0; i <= steps; i++ {
		t := float64(i) / float64(steps)
		px, py := int(math.Round(x1+t*(x2-x1))), int(math.Round(y1+t*(y2-y1)))
		for dx := -half; dx <= half; dx++ {
			for dy := -half; dy <= half; dy++ {
				c.img.Set(px+dx, py+dy, col)
			}
		}
	}
}

func (c *pngCanvas) text(x, y float64, s string, st textStyle) {
	face := basicfont.Face7x13
	w := font.MeasureString(face, s).Round()
	switch st.anchor {
	case "middle":
		x -= float64(w) / 2
	case "end":
		x -= float64(w)
	}
	col := color.Color(color.Black)
	if st.color != "" {
		col = parseColor(st.color)
	}
	d := &font.Drawer{Dst: c.img, Src: image.NewUniform(col), Face: face, Dot: fixed.P(int(math.Round(x)), int(math.Round(y)))}
	d.DrawString(s)
	if st.bold { // the fixed font has no bold: draw it again a pixel over
		d.Dot = fixed.P(int(math.Round(x))+1, int(math.Round(y)))
		d.DrawString(s)
	}
}

func (c *pngCanvas) bytes() ([]byte, error) {
	var b bytes.Buffer
	if err := png.Encode(&b, c.img); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// parseColor reads #rgb or #rrggbb; black otherwise.
func parseColor(s string) color.Color {
	var r, g, b uint8
	switch len(s) {
	case 7:
		if _, err := fmt.Sscanf(s, "#%02x%02x%02x", &r, &g, &b); err == nil {
			return color.RGBA{r, g, b, 255}
		}
	case 4:
		if _, err := fmt.Sscanf(s, "#%1x%1x%1x", &r, &g, &b); err == nil {
			return color.RGBA{r * 17, g * 17, b * 17, 255}
		}
	}
	return color.Black
}
