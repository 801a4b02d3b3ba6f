package e2e

import (
	"strconv"
	"strings"
	"sync"
)

// Screen is a minimal VT100/xterm screen model, enough to read what a
// full-screen terminal program (such as the bubbletea wizard) shows: it
// keeps a grid of characters and applies printable text, CR/LF/BS/TAB,
// cursor movement (CUP, HVP, CUU/CUD/CUF/CUB, CNL/CPL, CHA, VPA, DECSC/
// DECRC), erasing (ED, EL, ECH), insert/delete of lines and characters
// (IL, DL, ICH, DCH), repeat (REP), scrolling regions (DECSTBM) and the
// alternate screen. Colours, attributes, OSC strings and modes are parsed
// and ignored.
type Screen struct {
	mu         sync.Mutex
	rows, cols int
	grid       [][]rune
	alt        [][]rune // saved main screen while the alternate one is shown
	r, c       int
	sr, sc     int // saved cursor
	top, bot   int // scrolling region, inclusive
	last       rune
	state      int // parser state
	params     []byte
	pending    []byte // incomplete UTF-8
}

// NewScreen returns an empty screen of the given size.
func NewScreen(rows, cols int) *Screen {
	s := &Screen{rows: rows, cols: cols, bot: rows - 1}
	s.grid = blankGrid(rows, cols)
	return s
}

func blankGrid(rows, cols int) [][]rune {
	g := make([][]rune, rows)
	for i := range g {
		g[i] = blankRow(cols)
	}
	return g
}

func blankRow(cols int) []rune {
	r := make([]rune, cols)
	for i := range r {
		r[i] = ' '
	}
	return r
}

// Text returns the screen's rows, right-trimmed, joined by newlines.
func (s *Screen) Text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	lines := make([]string, s.rows)
	for i, row := range s.grid {
		lines[i] = strings.TrimRight(string(row), " ")
	}
	return strings.Join(lines, "\n")
}

const (
	stGround = iota
	stEsc
	stCSI
	stOSC
	stOSCEsc
	stCharset
)

// Write feeds terminal output to the screen.
func (s *Screen) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := append(s.pending, p...)
	s.pending = nil
	for i := 0; i < len(b); {
		c := b[i]
		switch s.state {
		case stGround:
			switch {
			case c == 0x1b:
				s.state = stEsc
			case c == '\r':
				s.c = 0
			case c == '\n', c == 0x0b, c == 0x0c:
				s.lineFeed()
			case c == '\b':
				if s.c > 0 {
					s.c--
				}
			case c == '\t':
				s.c = min((s.c/8+1)*8, s.cols-1)
			case c < 0x20 || c == 0x7f:
			case c < 0x80:
				s.put(rune(c))
			default:
				r, n := decodeRune(b[i:])
				if n == 0 { // incomplete sequence at the end
					s.pending = append([]byte(nil), b[i:]...)
					return len(p), nil
				}
				s.put(r)
				i += n
				continue
			}
		case stEsc:
			s.state = stGround
			switch c {
			case '[':
				s.state, s.params = stCSI, s.params[:0]
			case ']', 'P', '_', '^':
				s.state = stOSC
			case '(', ')', '*', '+', '#', '%':
				s.state = stCharset
			case '7':
				s.sr, s.sc = s.r, s.c
			case '8':
				s.r, s.c = s.sr, s.sc
			case 'D':
				s.lineFeed()
			case 'E':
				s.c = 0
				s.lineFeed()
			case 'M':
				if s.r == s.top {
					s.scrollDown(1)
				} else if s.r > 0 {
					s.r--
				}
			case 'c':
				s.grid, s.r, s.c, s.top, s.bot = blankGrid(s.rows, s.cols), 0, 0, 0, s.rows-1
			}
		case stCharset:
			s.state = stGround
		case stOSC:
			switch c {
			case 0x07:
				s.state = stGround
			case 0x1b:
				s.state = stOSCEsc
			}
		case stOSCEsc:
			s.state = stGround
			if c != '\\' {
				s.state = stOSC
			}
		case stCSI:
			if c >= 0x40 && c <= 0x7e {
				s.csi(c)
				s.state = stGround
			} else {
				s.params = append(s.params, c)
			}
		}
		i++
	}
	return len(p), nil
}

func decodeRune(b []byte) (rune, int) {
	n := 0
	switch {
	case b[0]&0xe0 == 0xc0:
		n = 2
	case b[0]&0xf0 == 0xe0:
		n = 3
	case b[0]&0xf8 == 0xf0:
		n = 4
	default:
		return '?', 1
	}
	if len(b) < n {
		return 0, 0
	}
	r := []rune(string(b[:n]))
	if len(r) != 1 {
		return '?', n
	}
	return r[0], n
}

func (s *Screen) put(r rune) {
	if s.c >= s.cols {
		s.c = 0
		s.lineFeed()
	}
	s.grid[s.r][s.c] = r
	s.last = r
	s.c++
}

func (s *Screen) lineFeed() {
	if s.r == s.bot {
		s.scrollUp(1)
	} else if s.r < s.rows-1 {
		s.r++
	}
}

func (s *Screen) scrollUp(n int) {
	for ; n > 0; n-- {
		copy(s.grid[s.top:s.bot], s.grid[s.top+1:s.bot+1])
		s.grid[s.bot] = blankRow(s.cols)
	}
}

func (s *Screen) scrollDown(n int) {
	for ; n > 0; n-- {
		copy(s.grid[s.top+1:s.bot+1], s.grid[s.top:s.bot])
		s.grid[s.top] = blankRow(s.cols)
	}
}

func (s *Screen) csi(final byte) {
	raw := string(s.params)
	private := strings.HasPrefix(raw, "?") || strings.HasPrefix(raw, ">") || strings.HasPrefix(raw, "<") || strings.HasPrefix(raw, "=")
	raw = strings.TrimLeft(raw, "?><=")
	var ps []int
	for _, f := range strings.Split(raw, ";") {
		f, _, _ = strings.Cut(f, ":")
		n, _ := strconv.Atoi(f)
		ps = append(ps, n)
	}
	p := func(i, def int) int {
		if i < len(ps) && ps[i] != 0 {
			return ps[i]
		}
		return def
	}
	clampR := func(v int) int { return max(0, min(v, s.rows-1)) }
	clampC := func(v int) int { return max(0, min(v, s.cols-1)) }
	if private {
		if (final == 'h' || final == 'l') && (p(0, 0) == 1049 || p(0, 0) == 47 || p(0, 0) == 1047) {
			if final == 'h' && s.alt == nil {
				s.alt = s.grid
				s.grid = blankGrid(s.rows, s.cols)
			} else if final == 'l' && s.alt != nil {
				s.grid, s.alt = s.alt, nil
			}
		}
		return
	}
	switch final {
	case 'H', 'f':
		s.r, s.c = clampR(p(0, 1)-1), clampC(p(1, 1)-1)
	case 'A':
		s.r = clampR(s.r - p(0, 1))
	case 'B', 'e':
		s.r = clampR(s.r + p(0, 1))
	case 'C', 'a':
		s.c = clampC(s.c + p(0, 1))
	case 'D':
		s.c = clampC(s.c - p(0, 1))
	case 'E':
		s.r, s.c = clampR(s.r+p(0, 1)), 0
	case 'F':
		s.r, s.c = clampR(s.r-p(0, 1)), 0
	case 'G', '`':
		s.c = clampC(p(0, 1) - 1)
	case 'd':
		s.r = clampR(p(0, 1) - 1)
	case 'J':
		switch p(0, 0) {
		case 0:
			s.eraseRow(s.r, s.c, s.cols)
			for r := s.r + 1; r < s.rows; r++ {
				s.grid[r] = blankRow(s.cols)
			}
		case 1:
			for r := 0; r < s.r; r++ {
				s.grid[r] = blankRow(s.cols)
			}
			s.eraseRow(s.r, 0, s.c+1)
		default:
			s.grid = blankGrid(s.rows, s.cols)
		}
	case 'K':
		switch p(0, 0) {
		case 0:
			s.eraseRow(s.r, s.c, s.cols)
		case 1:
			s.eraseRow(s.r, 0, s.c+1)
		default:
			s.eraseRow(s.r, 0, s.cols)
		}
	case 'X':
		s.eraseRow(s.r, s.c, s.c+p(0, 1))
	case 'b':
		for i := 0; i < p(0, 1); i++ {
			s.put(s.last)
		}
	case '@':
		row := s.grid[s.r]
		n := min(p(0, 1), s.cols-s.c)
		copy(row[s.c+n:], row[s.c:s.cols-n])
		for i := s.c; i < s.c+n; i++ {
			row[i] = ' '
		}
	case 'P':
		row := s.grid[s.r]
		n := min(p(0, 1), s.cols-s.c)
		copy(row[s.c:], row[s.c+n:])
		for i := s.cols - n; i < s.cols; i++ {
			row[i] = ' '
		}
	case 'L', 'M':
		if s.r < s.top || s.r > s.bot {
			return
		}
		top := s.top
		s.top = s.r
		if final == 'L' {
			s.scrollDown(min(p(0, 1), s.bot-s.r+1))
		} else {
			s.scrollUp(min(p(0, 1), s.bot-s.r+1))
		}
		s.top = top
	case 'S':
		s.scrollUp(p(0, 1))
	case 'T':
		s.scrollDown(p(0, 1))
	case 'r':
		t, b := p(0, 1)-1, p(1, s.rows)-1
		if t < b && b < s.rows {
			s.top, s.bot = t, b
		} else {
			s.top, s.bot = 0, s.rows-1
		}
		s.r, s.c = 0, 0
	case 's':
		s.sr, s.sc = s.r, s.c
	case 'u':
		s.r, s.c = s.sr, s.sc
	}
}

func (s *Screen) eraseRow(r, from, to int) {
	to = min(to, s.cols)
	for i := max(from, 0); i < to; i++ {
		s.grid[r][i] = ' '
	}
}
