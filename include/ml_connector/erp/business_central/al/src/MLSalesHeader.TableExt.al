// Fulfillment status fields that ml-connector keeps up to date from carrier tracking scans.
// Plain Text/DateTime fields with no OnValidate logic: they are informational and, like the standard
// "Package Tracking No." (field 106), must stay writable on a Released order.
namespace MLConnector.Shipping;

using Microsoft.Sales.Document;

tableextension 50100 "ML Sales Header" extends "Sales Header"
{
    fields
    {
        field(50100; "ML Shipment Status"; Text[30])
        {
            Caption = 'Shipment Status';
            DataClassification = CustomerContent;
            ToolTip = 'Specifies the carrier status of the package, written by ml-connector (label_created, in_transit, out_for_delivery, delivered, exception, voided).';
        }
        field(50101; "ML Last Tracking Event"; Text[100])
        {
            Caption = 'Last Tracking Event';
            DataClassification = CustomerContent;
            ToolTip = 'Specifies the latest carrier tracking scan for the package, written by ml-connector.';
        }
        field(50102; "ML Delivered At"; DateTime)
        {
            Caption = 'Delivered At';
            DataClassification = CustomerContent;
            ToolTip = 'Specifies when the carrier delivered the package, written by ml-connector.';
        }
    }
}
