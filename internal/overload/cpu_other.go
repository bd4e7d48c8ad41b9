//go:build !unix

package overload

// CPUUse reads the share of the available CPU the process used; it is not
// known on this system, where the detector does without it.
type CPUUse struct{}

// NewCPUUse returns a reader.
func NewCPUUse() *CPUUse { return &CPUUse{} }

// Share reports false: not known here.
func (c *CPUUse) Share() (float64, bool) { return 0, false }
