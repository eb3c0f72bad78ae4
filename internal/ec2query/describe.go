package ec2query

import (
	"context"
	"net/url"
	"strconv"
)

// Filter is one of a Describe call's filters: Name matches any of Values.
type Filter struct {
	Name   string
	Values []string
}

// PublicIPs returns the public IPv4 address of each of the network
// interfaces eniIDs that has one, by interface ID; an interface without one
// is absent. No IDs, no call (EC2 would list every interface).
func (c *Client) PublicIPs(ctx context.Context, eniIDs []string) (map[string]string, error) {
	ips := map[string]string{}
	if len(eniIDs) == 0 {
		return ips, nil
	}
	p := url.Values{}
	list(p, "NetworkInterfaceId", eniIDs)
	err := pages(ctx, c, "DescribeNetworkInterfaces", p, func(r *networkInterfacesPage) {
		for _, ni := range r.Items {
			if ni.Association.PublicIP != "" {
				ips[ni.ID] = ni.Association.PublicIP
			}
		}
	})
	if err != nil {
		return nil, err
	}
	return ips, nil
}

// VPCIDs returns the IDs of the VPCs that match every filter, e.g.
// Filter{Name: "isDefault", Values: []string{"true"}}.
func (c *Client) VPCIDs(ctx context.Context, filters ...Filter) ([]string, error) {
	var ids []string
	err := pages(ctx, c, "DescribeVpcs", filterParams(filters), func(r *vpcsPage) {
		for _, v := range r.Items {
			ids = append(ids, v.ID)
		}
	})
	return ids, err
}

// SubnetIDs returns the IDs of the subnets that match every filter, e.g.
// Filter{Name: "vpc-id", Values: []string{vpc}}.
func (c *Client) SubnetIDs(ctx context.Context, filters ...Filter) ([]string, error) {
	var ids []string
	err := pages(ctx, c, "DescribeSubnets", filterParams(filters), func(r *subnetsPage) {
		for _, s := range r.Items {
			ids = append(ids, s.ID)
		}
	})
	return ids, err
}

// The response documents, with only the fields we read. Items are
// <item>s in a <…Set>; nested sets (tags, groups) are skipped unread.
type (
	networkInterfacesPage struct {
		Items []struct {
			ID          string `xml:"networkInterfaceId"`
			Association struct {
				PublicIP string `xml:"publicIp"`
			} `xml:"association"`
		} `xml:"networkInterfaceSet>item"`
		NextToken string `xml:"nextToken"`
	}
	vpcsPage struct {
		Items []struct {
			ID string `xml:"vpcId"`
		} `xml:"vpcSet>item"`
		NextToken string `xml:"nextToken"`
	}
	subnetsPage struct {
		Items []struct {
			ID string `xml:"subnetId"`
		} `xml:"subnetSet>item"`
		NextToken string `xml:"nextToken"`
	}
)

func (p *networkInterfacesPage) next() string { return p.NextToken }
func (p *vpcsPage) next() string              { return p.NextToken }
func (p *subnetsPage) next() string           { return p.NextToken }

// pages calls action once per page, each with the previous page's
// nextToken, and hands each page to each. It stops at a repeated token, as
// the SDK's paginators do, rather than loop forever on a service's bug.
func pages[P any, PP interface {
	*P
	next() string
}](ctx context.Context, c *Client, action string, params url.Values, each func(PP)) error {
	seen := map[string]bool{}
	for {
		page := PP(new(P))
		if err := c.Do(ctx, action, params, page); err != nil {
			return err
		}
		each(page)
		tok := page.next()
		if tok == "" || seen[tok] {
			return nil
		}
		seen[tok] = true
		params = cloneWith(params, "NextToken", tok)
	}
}

func cloneWith(v url.Values, key, value string) url.Values {
	out := make(url.Values, len(v)+1)
	for k, vs := range v {
		out[k] = vs
	}
	out.Set(key, value)
	return out
}

// list adds values as EC2's numbered list: name.1, name.2, ...
func list(p url.Values, name string, values []string) {
	for i, v := range values {
		p.Set(name+"."+strconv.Itoa(i+1), v)
	}
}

// filterParams encodes filters as Filter.N.Name and Filter.N.Value.M.
func filterParams(filters []Filter) url.Values {
	p := url.Values{}
	for i, f := range filters {
		prefix := "Filter." + strconv.Itoa(i+1) + "."
		p.Set(prefix+"Name", f.Name)
		list(p, prefix+"Value", f.Values)
	}
	return p
}
