// Package s3cors reproduces Amazon S3's bucket CORS behaviour exactly: the
// configuration document (S3 XML and the JSON shapes of the aws-cli, the S3
// console and CloudFormation), its validation with S3's error codes and
// messages, and the answer S3 gives to preflight and actual cross-origin
// requests.
//
// The package is the engine every corsd transport shares. It depends on the
// standard library only, does no I/O and holds no global state. The flow is:
//
//	cfg, err := s3cors.DecodeXML(body)      // or DecodeJSON, or Validate(&cfg)
//	rs := s3cors.Compile(cfg, s3cors.Options{})
//	var res s3cors.Result
//	rs.Evaluate(&req, &res)                 // concurrent-safe; rs is immutable
//
// The behaviour follows the project's specification (spec/s3-cors.md, "the
// spec" below); comments cite its section numbers.
package s3cors
