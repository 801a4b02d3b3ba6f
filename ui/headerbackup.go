package ui

import "path/filepath"

// checkHeaderBackup is the Options screen's check of the header-backup path
// (Config.CheckHeaderBackup's default). The check itself belongs to the
// pipeline: pipeline.CheckHeaderBackupPath(target, backup) (abs, err),
// written on the core branch, refuses a backup on the target or in a file
// stored on it and expands relative paths. Until that is merged this only
// makes the path absolute; pipeline.ValidateOptions (in NewPlan) still
// refuses an existing file or a missing directory.
//
// MERGE: replace the body with
//
//	return pipeline.CheckHeaderBackupPath(target, backup)
func checkHeaderBackup(target, backup string) (string, error) {
	_ = target
	return filepath.Abs(backup)
}
