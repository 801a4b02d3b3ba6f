package pipeline

// StopsPartWay reports whether step id, when the run is stopped while it
// runs, stops part way: the erase and the surface check save their
// position and stop within a block, and preparing the disk again with the
// same choices continues from there. Every other step runs to its end
// first (Plan.Run starts no further step).
func StopsPartWay(id StepID) bool { return id == StepErase || id == StepSurfaceCheck }
