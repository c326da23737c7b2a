// Package stages holds dlflow's built-in transform and source stages: the
// HTTP source and range reader, the range splitter, the coalescing buffer,
// the reorder heap and the progress tap. Importing the package registers
// them in pipeline.DefaultRegistry.
package stages
