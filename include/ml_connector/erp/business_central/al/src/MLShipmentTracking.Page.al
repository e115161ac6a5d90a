// Custom API page through which ml-connector writes the carrier tracking number, the shipping agent and
// the fulfillment status back onto a sales order:
//   GET/PATCH /api/mlconnector/shipping/v1.0/companies({companyId})/salesOrderShipping({salesOrderId})
// The id is the Sales Header SystemId, i.e. the same GUID as the standard API v2.0 salesOrders id, so the
// connector can PATCH here with the id it read from /api/v2.0/.../salesOrders. PATCH needs If-Match with
// this page's own @odata.etag (GET it first; the salesOrders etag is a different entity's token).
//
// Why a custom page: API v2.0 exposes no shipping agent or package tracking field and its pages are
// Extensible = false, so Microsoft's guidance is to publish a custom API page.
//
// Released orders: the connector writes back after the label exists, when the order is Released.
// - "Package Tracking No." (field 106) has no OnValidate trigger, so it is bound to Rec and validated
//   normally; that works whatever the status.
// - "Shipping Agent Code" (105) and "Shipping Agent Service Code" (5794) call TestStatusOpen() in their
//   OnValidate triggers, which fails on a Released order. Reopening and re-releasing the order from an
//   integration would re-run release checks, approvals and warehouse requests, so instead these two
//   fields are bound to page variables: on an Open order their OnValidate runs the standard
//   Rec.Validate (shipping time and sales lines are updated as usual); on any other status the page
//   checks the code exists and assigns the header field directly, leaving the lines untouched. The
//   header value is what posting copies to the Sales Shipment Header and what the "Track Package"
//   action combines with the agent's Internet Address.
// The fields are validated in page order, so the agent comes before its service (validating an agent
// clears the service code).
namespace MLConnector.Shipping;

using Microsoft.Foundation.Shipping;
using Microsoft.Sales.Document;

page 50100 "ML Shipment Tracking API"
{
    PageType = API;
    Caption = 'salesOrderShipping', Locked = true;
    APIPublisher = 'mlconnector';
    APIGroup = 'shipping';
    APIVersion = 'v1.0';
    EntityName = 'salesOrderShipping';
    EntitySetName = 'salesOrderShipping';
    EntityCaption = 'Sales Order Shipping';
    EntitySetCaption = 'Sales Order Shipping';
    SourceTable = "Sales Header";
    SourceTableView = where("Document Type" = const(Order));
    ODataKeyFields = SystemId;
    DelayedInsert = true;
    InsertAllowed = false;
    DeleteAllowed = false;
    ModifyAllowed = true;
    Extensible = false;

    layout
    {
        area(Content)
        {
            repeater(Records)
            {
                field(id; Rec.SystemId)
                {
                    Caption = 'Id', Locked = true;
                    Editable = false;
                }
                field(number; Rec."No.")
                {
                    Caption = 'No.', Locked = true;
                    Editable = false;
                }
                field(packageTrackingNo; Rec."Package Tracking No.")
                {
                    Caption = 'Package Tracking No.', Locked = true;
                }
                field(shippingAgentCode; ShippingAgentCode)
                {
                    Caption = 'Shipping Agent Code', Locked = true;

                    trigger OnValidate()
                    begin
                        SetShippingAgentCode(ShippingAgentCode);
                    end;
                }
                field(shippingAgentServiceCode; ShippingAgentServiceCode)
                {
                    Caption = 'Shipping Agent Service Code', Locked = true;

                    trigger OnValidate()
                    begin
                        SetShippingAgentServiceCode(ShippingAgentServiceCode);
                    end;
                }
                field(mlShipmentStatus; Rec."ML Shipment Status")
                {
                    Caption = 'Shipment Status', Locked = true;
                }
                field(mlLastTrackingEvent; Rec."ML Last Tracking Event")
                {
                    Caption = 'Last Tracking Event', Locked = true;
                }
                field(mlDeliveredAt; Rec."ML Delivered At")
                {
                    Caption = 'Delivered At', Locked = true;
                }
                field(lastModifiedDateTime; Rec.SystemModifiedAt)
                {
                    Caption = 'Last Modified Date Time', Locked = true;
                    Editable = false;
                }
            }
        }
    }

    trigger OnAfterGetRecord()
    begin
        ShippingAgentCode := Rec."Shipping Agent Code";
        ShippingAgentServiceCode := Rec."Shipping Agent Service Code";
    end;

    var
        ShippingAgentCode: Code[10];
        ShippingAgentServiceCode: Code[10];
        UnknownAgentErr: Label 'Shipping Agent %1 does not exist in company %2. Create it on the Shipping Agents page or change the connector''s shipping_agent_code setting.', Comment = '%1 = agent code, %2 = company name';
        UnknownServiceErr: Label 'Shipping Agent Service %2 does not exist for Shipping Agent %1. Create it on the Shipping Agent Services page or change the connector''s service mapping.', Comment = '%1 = agent code, %2 = service code';

    local procedure SetShippingAgentCode(NewCode: Code[10])
    var
        ShippingAgent: Record "Shipping Agent";
    begin
        if Rec.Status = Rec.Status::Open then begin
            Rec.Validate("Shipping Agent Code", NewCode);
            exit;
        end;
        // Released / Pending Prepayment / Pending Approval: TestStatusOpen() would fail, assign directly
        // but keep the table relation honest.
        if NewCode = Rec."Shipping Agent Code" then
            exit;
        if (NewCode <> '') and not ShippingAgent.Get(NewCode) then
            Error(UnknownAgentErr, NewCode, CompanyName());
        Rec."Shipping Agent Code" := NewCode;
        // Same rule as the standard trigger: a service belongs to its agent.
        Rec."Shipping Agent Service Code" := '';
    end;

    local procedure SetShippingAgentServiceCode(NewCode: Code[10])
    var
        ShippingAgentServices: Record "Shipping Agent Services";
    begin
        if Rec.Status = Rec.Status::Open then begin
            Rec.Validate("Shipping Agent Service Code", NewCode);
            exit;
        end;
        if NewCode = Rec."Shipping Agent Service Code" then
            exit;
        if (NewCode <> '') and not ShippingAgentServices.Get(Rec."Shipping Agent Code", NewCode) then
            Error(UnknownServiceErr, Rec."Shipping Agent Code", NewCode);
        Rec."Shipping Agent Service Code" := NewCode;
    end;
}
