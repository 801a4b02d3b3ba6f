package ui

import (
	"io"
	"os"
	"sync"
	"time"
	"unicode/utf8"

	lsecret "luksdock/internal/secret"
)

// keyFilter stands between the terminal and bubbletea (ui.Run gives it to
// tea.WithInput in place of /dev/tty). bubbletea reads the terminal into
// its own buffers and hands each key (KeyPressMsg.Text) and a bracketed
// paste (PasteMsg.Content) over as Go strings: copies luksdock cannot wipe.
// So while a masked field has the focus (setMasked), the filter reads the
// terminal into secret memory (luksdock/internal/secret: locked, out of
// core dumps, wiped) and gives bubbletea, for each character typed or
// pasted, a placeholder instead: a private-use code point that names the
// character's place in a FIFO of secret memory. The masked field turns the
// placeholders it gets back into the characters (take), into its own
// secret buffer. What bubbletea needs unchanged passes unchanged: control
// bytes (Enter, Tab, Backspace, Ctrl+U, …), escape sequences (arrow keys,
// Esc, F1, terminal replies, kitty/CSI-u keys) and the bracketed-paste
// markers around a paste. Outside a masked field every byte passes as it
// was read.
//
// It keeps what spans two reads: a character whose UTF-8 bytes are split
// (held back until complete), and the escape sequence being read.
//
// A placeholder gives back its own character or nothing, never another's:
// each names its entry's sequence number (modulo the placeholder range),
// take drops (wipes) the entries before it that no key took (a placeholder
// that bubbletea folded into something else, such as Alt+key), and the
// FIFO is wiped when the focus leaves a masked field, so the placeholders
// still on their way find nothing. Characters typed ahead past such a
// change of focus are therefore dropped, as they are not what the masked
// field should get.
type keyFilter struct {
	tty *os.File

	sem chan struct{} // held by Read for the whole read, and by wipe

	mu     sync.Mutex
	masked bool
	closed bool
	buf    []byte // secret: a held split character, then what one read got
	held   int    // bytes of buf that are a character split between reads
	lit    int    // continuation bytes still to pass as they are (Alt+character)
	st     escState
	// csi holds a CSI sequence (ESC [ and its parameters) while masked,
	// until its final byte shows whether it is a character (xterm's
	// modifyOtherKeys form, CSI 27;m;c~, which bubbletea asks for): secret
	// memory, as the parameters spell the character. Only a sequence
	// whose ESC came in the same read is held (a terminal sends a key's
	// sequence in one write); ncsi 0: the CSI sequence passes as it comes.
	csi    []byte
	ncsi   int
	escOut int       // where in this read's output the last ESC went (-1: none)
	last   time.Time // the previous read
	// The FIFO: a ring of fifoCap entries of 4 bytes (one character's
	// UTF-8, zero-padded), the oldest at head; seq is its sequence number.
	q       []byte // secret
	head, n int
	seq     uint64
}

type escState uint8

const (
	stGround escState = iota
	stEsc             // after ESC
	stCSI             // in a CSI sequence, until its final byte
	stSS3             // after ESC O: parameters, then one byte
	stStr             // OSC, DCS, APC, PM, SOS: until BEL, CAN, SUB, ST or ESC
)

const (
	// Placeholders are U+F0000 + (sequence number mod phSpan), in the
	// Supplementary Private Use Area-A (4 bytes of UTF-8 each); phOver is
	// a character the FIFO had no room for.
	phBase = 0xF0000
	phSpan = 0xFFFFD - phBase
	phOver = phBase + phSpan
	// fifoCap is how many characters may be on their way at once
	// (MaxPassphrase is 512 bytes; far fewer than phSpan).
	fifoCap = 4096
	// escGap: a read this long after the last one does not continue its
	// escape sequence. bubbletea's reader gives up on an unfinished
	// sequence after 50 ms (ultraviolet's DefaultEscTimeout); the margin
	// is for its timer.
	escGap = 100 * time.Millisecond
	// readMax is the most one read takes from the terminal.
	readMax = 1024
	// csiMax is the longest CSI sequence held back while masked (longer
	// ones pass: they are terminal replies, not keys).
	csiMax = 32
)

// newKeyFilter is the filter of the terminal tty.
func newKeyFilter(tty *os.File) *keyFilter {
	return &keyFilter{
		tty: tty,
		sem: make(chan struct{}, 1),
		buf: lsecret.New(utf8.UTFMax + readMax),
		q:   lsecret.New(4 * fifoCap),
		csi: lsecret.New(csiMax),
	}
}

// Fd, Name, Write and Close are the terminal's: bubbletea puts the
// terminal in raw mode through Fd, and its cancelable reader waits (epoll)
// on Fd until the terminal has input before it calls Read.
func (k *keyFilter) Fd() uintptr                 { return k.tty.Fd() }
func (k *keyFilter) Name() string                { return k.tty.Name() }
func (k *keyFilter) Write(b []byte) (int, error) { return k.tty.Write(b) }
func (k *keyFilter) Close() error                { return k.tty.Close() }

// Read reads the terminal into secret memory and gives p what bubbletea
// may see. Each byte read gives at most 4 bytes (a placeholder), so it
// reads at most len(p)/4 bytes, less room for a held character and a held
// CSI sequence.
func (k *keyFilter) Read(p []byte) (int, error) {
	k.sem <- struct{}{}
	defer func() { <-k.sem }()
	k.mu.Lock()
	closed, held := k.closed, k.held
	k.mu.Unlock()
	if closed {
		return 0, io.EOF
	}
	max := min((len(p)-4*utf8.UTFMax-csiMax)/4, readMax)
	if max < 1 {
		return 0, io.ErrShortBuffer
	}
	n, err := k.tty.Read(k.buf[held : held+max])
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.filter(p, n, time.Now()), err
}

// filterOut is what one Read gives bubbletea: p, filled up to o.
type filterOut struct {
	p []byte
	o int
}

func (w *filterOut) pass(b byte) { w.p[w.o] = b; w.o++ }

// flushCSI passes the held CSI parameters as they came, and wipes them.
func (k *keyFilter) flushCSI(w *filterOut) {
	w.o += copy(w.p[w.o:], k.csi[:k.ncsi])
	clear(k.csi[:k.ncsi])
	k.ncsi = 0
}

// filter turns buf[:held+n] into p, holding back a split character while
// masked, and wipes what it read.
func (k *keyFilter) filter(p []byte, n int, now time.Time) int {
	w := &filterOut{p: p}
	if k.st != stGround && now.Sub(k.last) > escGap {
		k.flushCSI(w)
		k.st, k.lit = stGround, 0
	}
	k.last = now
	k.escOut = -1
	in := k.buf[:k.held+n]
	i := 0
	for i < len(in) {
		adv := k.step(w, in[i:])
		if adv < 0 {
			break // a character split between reads: held below
		}
		i += adv
	}
	rest := len(in) - i
	copy(k.buf, in[i:])
	clear(k.buf[rest:])
	k.held = rest
	return w.o
}

// step filters in[0] (a character: with the bytes that follow) in the
// state the filter is in, and says how many bytes it took: 0 when in[0]
// ended a sequence and is read again in the ground state, -1 when a
// character is split between reads.
func (k *keyFilter) step(w *filterOut, in []byte) int {
	b := in[0]
	if k.lit > 0 {
		if b >= 0x80 && b < 0xC0 {
			w.pass(b)
			k.lit--
			return 1
		}
		k.lit = 0
	}
	switch k.st {
	case stEsc:
		return k.escByte(w, b)
	case stCSI:
		return k.csiByte(w, b)
	case stSS3:
		return k.ss3Byte(w, b)
	case stStr:
		return k.strByte(w, b)
	}
	return k.groundByte(w, in)
}

// escByte is the byte after an ESC.
func (k *keyFilter) escByte(w *filterOut, b byte) int {
	k.st = stGround
	switch {
	case b == '[' && k.masked && k.escOut >= 0 && k.escOut == w.o-1:
		// ESC [ in this read: held with what follows.
		w.o--
		k.csi[0], k.csi[1], k.ncsi = 0x1b, '[', 2
		k.st = stCSI
		return 1
	case b == '[':
		k.st = stCSI
	case b == 'O':
		k.st = stSS3
	case b == ']' || b == 'P' || b == '_' || b == '^' || b == 'X':
		k.st = stStr
	case b == 0x1b:
		k.st = stEsc
	case b >= 0xC0:
		// Alt with a character: bubbletea makes it a key with no text,
		// so it passes as it is.
		k.lit = utf8RuneLen(b) - 1
	}
	w.pass(b)
	return 1
}

// csiByte is a byte of a CSI sequence.
func (k *keyFilter) csiByte(w *filterOut, b byte) int {
	switch {
	case b >= 0x40 && b <= 0x7e:
		k.st = stGround
		if r, ok := k.otherKey(b); ok {
			clear(k.csi[:k.ncsi])
			k.ncsi = 0
			var c [utf8.UTFMax]byte
			w.o += utf8.EncodeRune(w.p[w.o:], k.push(c[:utf8.EncodeRune(c[:], r)]))
			clear(c[:])
			return 1
		}
		k.flushCSI(w)
	case b >= 0x20 && b <= 0x3f:
		if k.ncsi > 0 && k.ncsi < csiMax {
			k.csi[k.ncsi] = b
			k.ncsi++
			return 1
		}
		k.flushCSI(w)
	default: // not part of a CSI sequence: it ends before b
		k.flushCSI(w)
		k.st = stGround
		return 0
	}
	w.pass(b)
	return 1
}

// ss3Byte is a byte after ESC O.
func (k *keyFilter) ss3Byte(w *filterOut, b byte) int {
	switch {
	case b >= 0x30 && b <= 0x3f:
	case b >= 0x20 && b <= 0x7e:
		k.st = stGround
	default:
		k.st = stGround
		return 0
	}
	w.pass(b)
	return 1
}

// strByte is a byte of a string sequence (OSC, DCS, ...): it passes, and
// its terminator ends it.
func (k *keyFilter) strByte(w *filterOut, b byte) int {
	switch b {
	case 0x07, 0x18, 0x1a, 0x9c:
		k.st = stGround
	case 0x1b:
		k.st = stEsc
	}
	w.pass(b)
	return 1
}

// groundByte is a byte outside any sequence: a control, or a character,
// which is put in the FIFO while a masked field has the focus.
func (k *keyFilter) groundByte(w *filterOut, in []byte) int {
	b := in[0]
	switch {
	case b == 0x1b:
		k.st = stEsc
		w.pass(b)
		k.escOut = w.o - 1
		return 1
	case b >= 0x80 && b < 0xA0:
		// A C1 control (never the start of UTF-8); bubbletea reads
		// 0x9b as CSI and so on.
		switch b {
		case 0x9b:
			k.st = stCSI
		case 0x8f:
			k.st = stSS3
		case 0x90, 0x9d, 0x9f, 0x9e, 0x98:
			k.st = stStr
		}
		w.pass(b)
		return 1
	case b < 0x20 || b == 0x7f:
		w.pass(b)
		return 1
	case !k.masked:
		// A character passes as it is; its continuation bytes too, never
		// read as C1 controls (the 0x9F of "ğ" is not a string's start).
		k.lit = utf8RuneLen(b) - 1
		w.pass(b)
		return 1
	}
	// A character, typed while a masked field has the focus.
	if !utf8.FullRune(in) {
		return -1
	}
	r, size := utf8.DecodeRune(in)
	if r == utf8.RuneError && size <= 1 {
		w.pass(b) // not UTF-8: bubbletea drops it
		return 1
	}
	w.o += utf8.EncodeRune(w.p[w.o:], k.push(in[:size]))
	return size
}

// otherKey reports whether the held CSI parameters and final byte are a
// text key in xterm's modifyOtherKeys form (CSI 27;m;c~ with no modifier
// but Shift: m 1 or 2), and its character: bubbletea gives such a key the
// text c, as if it had been typed as text.
func (k *keyFilter) otherKey(final byte) (rune, bool) {
	if final != '~' || !k.masked || k.ncsi < 2 {
		return 0, false
	}
	var v [3]int
	i := 0
	for _, b := range k.csi[2:k.ncsi] {
		switch {
		case b == ';' && i < 2:
			i++
		case b >= '0' && b <= '9' && v[i] <= utf8.MaxRune:
			v[i] = v[i]*10 + int(b-'0')
		default:
			return 0, false
		}
	}
	r := rune(v[2])
	if i != 2 || v[0] != 27 || (v[1] != 1 && v[1] != 2) || r < 0x20 || r == 0x7f || !utf8.ValidRune(r) {
		return 0, false
	}
	return r, true
}

// utf8RuneLen is the length of the UTF-8 sequence that lead byte b starts.
func utf8RuneLen(b byte) int {
	switch {
	case b >= 0xF0:
		return 4
	case b >= 0xE0:
		return 3
	case b >= 0xC0:
		return 2
	}
	return 1
}

// push puts one character into the FIFO and returns its placeholder
// (phOver when the FIFO is full). Called with mu held.
func (k *keyFilter) push(c []byte) rune {
	if k.n == fifoCap {
		return phOver
	}
	slot := k.q[4*((k.head+k.n)%fifoCap):][:4]
	copy(slot, c)
	ph := rune(phBase + (k.seq+uint64(k.n))%phSpan)
	k.n++
	return ph
}

// isPlaceholder reports whether r is one of the filter's placeholders.
func isPlaceholder(r rune) bool { return r >= phBase && r <= phOver }

// take returns the character placeholder ph stands for and removes it
// from the FIFO, with the entries before it (which no key took); ok is
// false when the FIFO no longer has it (its entry was wiped) and for
// phOver.
func (k *keyFilter) take(ph rune) (r rune, ok bool) {
	if k == nil || ph < phBase || ph >= phOver {
		return 0, false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	d := (uint64(ph-phBase) + phSpan - k.seq%phSpan) % phSpan
	if d >= uint64(k.n) {
		return 0, false
	}
	for range d {
		k.drop()
	}
	slot := k.q[4*k.head:][:4]
	r, _ = utf8.DecodeRune(slot)
	k.drop()
	return r, true
}

// drop wipes the oldest entry. Called with mu held.
func (k *keyFilter) drop() {
	clear(k.q[4*k.head:][:4])
	k.head = (k.head + 1) % fifoCap
	k.n--
	k.seq++
}

// setMasked tells the filter whether a masked field has the focus. When
// the focus leaves one, the FIFO is wiped: placeholders still on their way
// find nothing.
func (k *keyFilter) setMasked(on bool) {
	if k == nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.masked && !on {
		for k.n > 0 {
			k.drop()
		}
	}
	k.masked = on
}

// wipe frees the filter's secret memory when the wizard ends; a Read after
// it returns io.EOF. It waits up to a second for a read in progress.
func (k *keyFilter) wipe() {
	select {
	case k.sem <- struct{}{}:
		defer func() { <-k.sem }()
	case <-time.After(time.Second):
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.closed, k.masked, k.n, k.held = true, false, 0, 0
	lsecret.Free(k.buf)
	lsecret.Free(k.q)
	lsecret.Free(k.csi)
	k.ncsi = 0
}
