// Package prototest fills protobuf messages with non-zero values, so tests
// of hand-written or generated fast paths can prove that every field of a
// message survives them, including fields added after the test was written.
package prototest

import (
	"fmt"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// maxDepth bounds recursion through message fields that (indirectly)
// contain their own type.
const maxDepth = 4

// Populate sets field fd of m to a non-zero value: "x-<name>" for strings,
// 7 for integers, 1 for enums, true for booleans, one element for lists,
// and messages with every field set.
func Populate(m protoreflect.Message, fd protoreflect.FieldDescriptor) {
	populate(m, fd, 0)
}

// PopulateAll sets every field of m (for a oneof, its last member).
func PopulateAll(m protoreflect.Message) {
	populateAll(m, 0)
}

func populateAll(m protoreflect.Message, depth int) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		populate(m, fields.Get(i), depth)
	}
}

func populate(m protoreflect.Message, fd protoreflect.FieldDescriptor, depth int) {
	if depth > maxDepth {
		return
	}
	switch {
	case fd.IsMap():
		m.Mutable(fd).Map().Set(scalar(fd.MapKey()).MapKey(), element(m.Mutable(fd).Map().NewValue, fd.MapValue(), depth))
	case fd.IsList():
		l := m.Mutable(fd).List()
		l.Append(element(l.NewElement, fd, depth))
	case fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind:
		populateAll(m.Mutable(fd).Message(), depth+1)
	default:
		m.Set(fd, scalar(fd))
	}
}

// element is a list element or map value: a populated message or a scalar.
func element(newValue func() protoreflect.Value, fd protoreflect.FieldDescriptor, depth int) protoreflect.Value {
	if fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind {
		v := newValue()
		populateAll(v.Message(), depth+1)
		return v
	}
	return scalar(fd)
}

func scalar(fd protoreflect.FieldDescriptor) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString("x-" + string(fd.Name()))
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte("x-" + string(fd.Name())))
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(1)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(7)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(7)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(7)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(7)
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(7)
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(7)
	}
	panic(fmt.Sprintf("prototest: no value for kind %s", fd.Kind()))
}
