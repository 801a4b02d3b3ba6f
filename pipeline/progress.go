package pipeline

import "time"

// StepState is where a step of a run stands, as its events tell it.
type StepState string

// The states of a step.
const (
	StepPending StepState = "pending" // no start event yet
	StepRunning StepState = "running" // started
	StepDone    StepState = "done"
	StepFailed  StepState = "failed"
	StepStopped StepState = "stopped" // a stop request kept it from running
)

// StepProgress is one step of a run as its events tell it.
type StepProgress struct {
	Step              // as planned (Command: the plan's)
	State   StepState // where it stands
	Ran     string    // the command it really runs, from its start event
	Started time.Time
	Elapsed time.Duration
	Message string // what its done or failed event said
}

// Progress is a run as its events tell it. The wizard's progress screen and
// prepare's text output both fold the events into one, so both show what
// the pipeline said, never a guess of their own.
type Progress struct {
	Engine    Engine
	EngineWhy string
	Steps     []StepProgress
	Warnings  []string
	Notes     []string
	Failure   *Event  // the failed event, if the run failed or was stopped
	Result    *Result // the result event's, if the run finished
}

// Apply folds event e into the progress and returns the step it concerns
// (nil for events of no step). A step with no plan event before it (verify's
// one step) is added when it starts.
func (p *Progress) Apply(e Event) *StepProgress {
	switch e.Kind {
	case EventPlan:
		p.Engine, p.EngineWhy = e.Engine, e.Message
		p.Steps = p.Steps[:0]
		for _, s := range e.Steps {
			p.Steps = append(p.Steps, StepProgress{Step: s, State: StepPending})
		}
		return nil
	case EventWarning:
		p.Warnings = append(p.Warnings, e.Message)
		return nil
	case EventInfo:
		p.Notes = append(p.Notes, e.Message)
		return nil
	case EventResult:
		p.Result = e.Result
		return nil
	}
	s := p.step(e.Step, e.Kind == EventStart)
	switch e.Kind {
	case EventStart:
		s.State, s.Ran, s.Started = StepRunning, e.Command, e.Time
		if s.Title == "" {
			s.Title = e.Message
		}
		if e.Engine != "" {
			p.Engine = e.Engine
		}
	case EventDone:
		if s == nil {
			return nil // a step whose start this Progress did not see
		}
		s.State, s.Elapsed, s.Message = StepDone, e.Elapsed, e.Message
	case EventFailed:
		failed := e
		p.Failure = &failed
		if s == nil {
			return nil
		}
		s.State, s.Elapsed, s.Message = StepFailed, e.Elapsed, e.Message
		if e.Failure == KindInterrupted {
			s.State = StepStopped
		}
	}
	return s
}

// Index is the position of step id in the run (0-based), -1 if unknown.
func (p *Progress) Index(id StepID) int {
	for i := range p.Steps {
		if p.Steps[i].ID == id {
			return i
		}
	}
	return -1
}

func (p *Progress) step(id StepID, add bool) *StepProgress {
	if i := p.Index(id); i >= 0 {
		return &p.Steps[i]
	}
	if !add || id == "" {
		return nil
	}
	p.Steps = append(p.Steps, StepProgress{Step: Step{ID: id}, State: StepPending})
	return &p.Steps[len(p.Steps)-1]
}
