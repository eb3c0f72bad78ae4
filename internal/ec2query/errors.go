package ec2query

import (
	"encoding/xml"
	"fmt"
	"net/http"

	"github.com/aws/smithy-go"
)

// APIError is an error EC2 answered with. It is a [smithy.APIError], so
// errors.As(err, &apiErr) finds it as it finds the SDK clients' errors, and
// its ErrorCode and HTTPStatusCode are what the SDK's retryers look at
// (RequestLimitExceeded is throttling; 5xx is retried).
type APIError struct {
	Code      string
	Message   string
	RequestID string
	// StatusCode is the HTTP status of the answer.
	StatusCode int
}

var _ smithy.APIError = (*APIError)(nil)

func (e *APIError) Error() string {
	return fmt.Sprintf("https response error StatusCode: %d, RequestID: %s, api error %s: %s",
		e.StatusCode, e.RequestID, e.Code, e.Message)
}

// ErrorCode is EC2's error code, e.g. "InvalidNetworkInterfaceID.NotFound".
func (e *APIError) ErrorCode() string { return e.Code }

// ErrorMessage is EC2's message.
func (e *APIError) ErrorMessage() string { return e.Message }

// ErrorFault says whose fault it was, by the status.
func (e *APIError) ErrorFault() smithy.ErrorFault {
	if e.StatusCode >= 500 {
		return smithy.FaultServer
	}
	return smithy.FaultClient
}

// HTTPStatusCode is the HTTP status of the answer.
func (e *APIError) HTTPStatusCode() int { return e.StatusCode }

// errorResponse is EC2's error document. Unlike the success documents it
// has no namespace and spells RequestID in capitals.
type errorResponse struct {
	XMLName xml.Name `xml:"Response"`
	Errors  []struct {
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	} `xml:"Errors>Error"`
	RequestID string `xml:"RequestID"`
}

// decodeError turns a non-2xx answer into an APIError. A body that is not
// EC2's error document (a proxy's page, nothing at all) still gives one,
// with code "UnknownError" as the SDK's clients give, so the status alone
// decides whether it is retried.
func decodeError(status int, body []byte) *APIError {
	e := &APIError{Code: "UnknownError", Message: http.StatusText(status), StatusCode: status}
	var doc errorResponse
	if err := xml.Unmarshal(body, &doc); err != nil {
		return e
	}
	e.RequestID = doc.RequestID
	if len(doc.Errors) > 0 && doc.Errors[0].Code != "" {
		e.Code, e.Message = doc.Errors[0].Code, doc.Errors[0].Message
	}
	return e
}
