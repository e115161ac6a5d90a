// Assign this permission set to the Microsoft Entra application (page "Microsoft Entra Applications")
// that ml-connector signs in as, together with a read set for the standard API (e.g. D365 READ or
// D365 BASIC), so it can read salesOrders and write tracking back through this page.
namespace MLConnector.Shipping;

using Microsoft.Sales.Document;
using Microsoft.Foundation.Shipping;

permissionset 50100 "ML SHIPPING API"
{
    Assignable = true;
    Caption = 'ml-connector Shipping API';

    // Sales Line = RM: validating the agent on an Open order updates the lines (standard trigger).
    Permissions =
        page "ML Shipment Tracking API" = X,
        tabledata "Sales Header" = RM,
        tabledata "Sales Line" = RM,
        tabledata "Shipping Agent" = R,
        tabledata "Shipping Agent Services" = R;
}
