package recovery

import (
	"strings"

	qrcode "github.com/skip2/go-qrcode"
)

// QRQuiet is the quiet zone QR draws around the code, in modules. The
// standard asks for 4; scanners read 2 without trouble, and a terminal's
// space is short.
const QRQuiet = 2

// QR draws key as a QR code in text: each character cell holds two modules,
// one above the other, with the half-block characters ▀ ▄ █ and space. The
// terminal's foreground colour draws the light modules when darkTerminal is
// set (light text on a dark background), the dark modules otherwise, so the
// code is dark-on-light as scanners expect either way. It returns the lines
// joined by "\n" (no trailing newline) and the width in cells, so the caller
// can decide whether it fits; it is (width+1)/2 lines high. The quiet zone
// (QRQuiet modules) is included.
//
// The QR library takes the key as a Go string: a copy that cannot be
// cleared (the screen shows the key anyway).
func QR(key []byte, darkTerminal bool) (text string, width int, err error) {
	q, err := qrcode.New(string(key), qrcode.Medium)
	if err != nil {
		return "", 0, err
	}
	q.DisableBorder = true
	bm := q.Bitmap()
	n := len(bm) + 2*QRQuiet
	// ink: the cell's foreground colour draws module (y, x).
	ink := func(y, x int) bool {
		y, x = y-QRQuiet, x-QRQuiet
		dark := y >= 0 && x >= 0 && y < len(bm) && x < len(bm) && bm[y][x]
		return dark != darkTerminal
	}
	var b strings.Builder
	for y := 0; y < n; y += 2 {
		if y > 0 {
			b.WriteByte('\n')
		}
		for x := 0; x < n; x++ {
			switch top, bottom := ink(y, x), ink(y+1, x); {
			case top && bottom:
				b.WriteString("█")
			case top:
				b.WriteString("▀")
			case bottom:
				b.WriteString("▄")
			default:
				b.WriteByte(' ')
			}
		}
	}
	return b.String(), n, nil
}
