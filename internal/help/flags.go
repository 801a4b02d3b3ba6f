package help

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// Vars name the variable each flag of a command sets: a *string, *bool,
// *int, *time.Duration, *[]string (a repeatable flag) or **int (an
// optional number: nil unless given). The variable's value when it is
// bound is the flag's default.
type Vars map[string]any

// nameKey is the annotation that holds the name Command gave a command.
const nameKey = "luksdock-help"

// Bind declares the flags of vars on cmd (made by Command), each with its
// help from the "-- flags --" section of cmd-NAME.txt, or else of
// flags.txt (the flags several commands share). A line there is the flag's
// name, a tab and its help, which may start with marks: [hidden] leaves it
// out of --help, [file] and [dir] complete it with a file or a directory
// ("engine<TAB>[hidden]": flags.txt's help, hidden). A command binds all
// its flags at once: a line of its own for a flag it does not have is a
// programming error, as a flag without help is.
func Bind(cmd *cobra.Command, vars ...Vars) {
	own, shared := flagHelp(sectionOf(cmd.Annotations[nameKey], "flags")), flagHelp(Text("flags"))
	f := cmd.Flags()
	bound := map[string]bool{}
	for _, vs := range vars {
		for name, v := range vs {
			bound[name] = true
			usage, marks := own[name], ""
			for _, m := range []string{"[hidden]", "[file]", "[dir]"} {
				if rest, ok := strings.CutPrefix(usage, m); ok {
					usage, marks = strings.TrimPrefix(rest, " "), marks+m
				}
			}
			if usage == "" {
				usage = shared[name]
			}
			if usage == "" {
				panic(fmt.Sprintf("help: no help for --%s of %q", name, cmd.Annotations[nameKey]))
			}
			switch p := v.(type) {
			case *string:
				f.StringVar(p, name, *p, usage)
			case *bool:
				f.BoolVar(p, name, *p, usage)
			case *int:
				f.IntVar(p, name, *p, usage)
			case *time.Duration:
				f.DurationVar(p, name, *p, usage)
			case *[]string:
				f.StringArrayVar(p, name, *p, usage)
			case **int:
				f.Var(optionalInt{p}, name, usage)
			default:
				panic(fmt.Sprintf("help: --%s: a %T cannot be a flag", name, v))
			}
			if strings.Contains(marks, "[hidden]") {
				_ = f.MarkHidden(name)
			}
			if strings.Contains(marks, "[file]") {
				_ = cmd.MarkFlagFilename(name)
			}
			if strings.Contains(marks, "[dir]") {
				_ = cmd.MarkFlagDirname(name)
			}
		}
	}
	for name := range own {
		if !bound[name] {
			panic(fmt.Sprintf("help: cmd-%s.txt has help for --%s, which it does not have", cmd.Annotations[nameKey], name))
		}
	}
}

// flagHelp parses "name<TAB>help" lines.
func flagHelp(text string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(text, "\n") {
		if name, usage, ok := strings.Cut(l, "\t"); ok {
			m[name] = usage
		}
	}
	return m
}

// optionalInt is a **int flag: it points *p at the number given.
type optionalInt struct{ p **int }

func (o optionalInt) Set(s string) error {
	n, err := strconv.ParseInt(s, 0, 64) // as an int flag parses it
	if err != nil {
		return err
	}
	v := int(n)
	*o.p = &v
	return nil
}

func (o optionalInt) String() string {
	if o.p == nil || *o.p == nil {
		return "0"
	}
	return strconv.Itoa(**o.p)
}

func (optionalInt) Type() string { return "int" }
