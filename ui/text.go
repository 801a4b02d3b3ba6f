package ui

import (
	"strings"

	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"
)

// Screens lay out their own text at the terminal's width with these helpers
// (plain text is wrapped first, then styled line by line), so the frame only
// clips and never breaks a word, a UUID or a command.

// wordWrap breaks plain text s into lines of at most w cells, only at
// spaces. A single word longer than w is broken (nothing else fits).
// Continuation lines start with indent.
func wordWrap(s string, w int, indent string) []string {
	w = max(w, 10)
	var out []string
	for _, para := range strings.Split(s, "\n") {
		lead := para[:len(para)-len(strings.TrimLeft(para, " "))]
		words := strings.Fields(para)
		line := lead
		empty := true
		for _, word := range words {
			switch {
			case empty:
				line += word
				empty = false
			case ansi.StringWidth(line)+1+ansi.StringWidth(word) <= w:
				line += " " + word
			default:
				out = append(out, line)
				line = lead + indent + word
			}
			for ansi.StringWidth(line) > w { // one word wider than the line
				cut := ansi.Truncate(line, w, "")
				out = append(out, cut)
				line = lead + indent + strings.TrimPrefix(line, cut)
				if ansi.StringWidth(lead+indent) >= w {
					line = strings.TrimPrefix(line, lead+indent)
				}
			}
		}
		out = append(out, line)
	}
	return out
}

// para wraps plain text s to w and styles every line with st.
func para(st lipgloss.Style, s string, w int, indent string) string {
	lines := wordWrap(s, w, indent)
	for i, l := range lines {
		lines[i] = st.Render(l)
	}
	return strings.Join(lines, "\n") + "\n"
}

// shellWords splits a shell command line at spaces outside quotes, so a
// quoted argument stays one word.
func shellWords(cmd string) []string {
	var words []string
	var cur strings.Builder
	var quote rune
	for _, r := range cmd {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote = r
			cur.WriteRune(r)
		case r == ' ':
			if cur.Len() > 0 {
				words = append(words, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		words = append(words, cur.String())
	}
	return words
}

// shellLines lays out a command as it can be copied and pasted into a shell:
// "prefix$ cmd", broken only between words, every line but the last ending
// in " \" and continuation lines indented. A word longer than the line is
// never broken; that line is longer than w.
//
// A comment ("# ...") does not continue with a backslash in a shell: its
// continuation lines start with "# " instead.
func shellLines(prefix, cmd string, w int) []string {
	if strings.Contains(cmd, "\n") {
		// several commands (a comment and a command): each on its own
		var out []string
		for _, c := range strings.Split(cmd, "\n") {
			out = append(out, shellLines(prefix, c, w)...)
		}
		return out
	}
	first := prefix + "$ "
	cont := prefix + "    "
	tail := " \\"
	if strings.HasPrefix(cmd, "#") {
		cont, tail = prefix+"  # ", ""
	}
	var out []string
	line := first
	empty := true
	for _, word := range shellWords(cmd) {
		if !empty && ansi.StringWidth(line)+1+ansi.StringWidth(word)+2 > w {
			out = append(out, line+tail)
			line, empty = cont, true
			if ansi.StringWidth(cont)+ansi.StringWidth(word)+2 > w {
				// a long word (a path): less indentation, so it fits
				line = prefix
				if tail == "" {
					line = prefix + "# "
				}
			}
		}
		if !empty {
			line += " "
		}
		line += word
		empty = false
		// a word still wider than the line (a long path) is broken with
		// a backslash at the line's end and goes on at the next line's
		// start: the shell joins the two (outside quotes, backslash and
		// newline are removed)
		for tail != "" && ansi.StringWidth(line) > w && w > 8 && isPlainASCII(word) && len(line) == ansi.StringWidth(line) {
			out = append(out, line[:w-1]+"\\")
			line = line[w-1:]
		}
	}
	return append(out, line)
}

// isPlainASCII reports whether a shell word can be broken anywhere with a
// backslash-newline: printable ASCII without quotes or backslashes.
func isPlainASCII(w string) bool {
	for i := 0; i < len(w); i++ {
		if c := w[i]; c < 0x21 || c > 0x7e || c == '\'' || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// command renders shellLines styled as a command.
func (c *shared) command(prefix, cmd string) string {
	var b strings.Builder
	for _, l := range shellLines(prefix, cmd, c.width) {
		b.WriteString(c.st.command.Render(l) + "\n")
	}
	return b.String()
}

// kv is "key  value" with the value wrapped at spaces and continuation lines
// aligned under it.
func (c *shared) kv(k, v string, st lipgloss.Style) string {
	const col = 18
	if v == "" {
		return ""
	}
	lines := wordWrap(v, max(c.width-col, 20), "")
	for i := range lines {
		lines[i] = st.Render(lines[i])
		if i > 0 {
			lines[i] = strings.Repeat(" ", col) + lines[i]
		}
	}
	return c.st.label.Render(truncate(k, col-1)) + strings.Join(lines, "\n") + "\n"
}

// truncate shortens s to w cells with an ellipsis.
func truncate(s string, w int) string {
	if ansi.StringWidth(s) <= w {
		return s
	}
	return ansi.Truncate(s, max(w, 1), "…")
}
