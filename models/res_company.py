from odoo import fields, models


class ResCompany(models.Model):
    _inherit = "res.company"

    online_sync_security_contact = fields.Char(
        string="Bank connection security contact",
        help="Phone number or e-mail address given at the first bank connection.")
