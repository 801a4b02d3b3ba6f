package e2e

import (
	"strings"
	"testing"
)

func TestScreen(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"text and newline", "hello\r\nworld", "hello\nworld"},
		{"cursor position and erase line", "abcdef\x1b[1;3H\x1b[K", "ab"},
		{"overwrite in the middle", "abcdef\x1b[1;3HXY", "abXYef"},
		{"colours ignored", "\x1b[1;38;2;255;0;0mred\x1b[m plain", "red plain"},
		{"repeat", "a\x1b[3b", "aaaa"},
		{"erase characters", "abcdef\x1b[1;2H\x1b[2X", "a  def"},
		{"relative moves", "ab\x1b[Bc\x1b[2Dd", "ab\n dc"},
		{"column and row absolute", "\x1b[3d\x1b[4Gx", "\n\n   x"},
		{"clear screen", "junk\x1b[2J\x1b[Hok", "ok"},
		{"alternate screen restores main", "main\x1b[?1049h\x1b[Halt\x1b[?1049l", "main"},
		{"alternate screen shown", "main\x1b[?1049h\x1b[Halt", "alt"},
		{"utf-8 split across writes", "caf\xc3", "café"},
		{"osc title ignored", "\x1b]0;title\x07text", "text"},
		{"delete line scrolls up", "1\r\n2\r\n3\x1b[1;1H\x1b[M", "2\n3"},
		{"insert line", "1\r\n2\x1b[1;1H\x1b[L", "\n1\n2"},
		{"scroll at bottom", "1\r\n2\r\n3\r\n4\r\n5", "2\n3\n4\n5"},
	}
	for _, c := range cases {
		s := NewScreen(4, 10)
		s.Write([]byte(c.in))
		if c.name == "utf-8 split across writes" {
			s.Write([]byte("\xa9"))
		}
		got := strings.TrimRight(s.Text(), "\n")
		if got != c.want {
			t.Errorf("%s: screen = %q, want %q", c.name, got, c.want)
		}
	}
}
